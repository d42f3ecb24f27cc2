// Claiming run.dir (trainer/run_dir_claim.h): the flock refuses a second holder, naming its host
// and pid, and comes free when the holder goes; a fresh run into a used directory is refused, an
// overwrite removes the old run's files (and only those), a resume is let through; and on several
// ranks (threads on the fake communicator) every rank gets rank 0's verdict, none left waiting.
// The mpirun case (every process of a refused run exits) is tests/trainer/cli_run_dir_test.sh.
#include "trainer/run_dir_claim.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, needle) \
  EXPECT_NE(std::string(text).find(needle), std::string::npos) << "in: " << (text)

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("tessera_run_dir_" + name);
  fs::remove_all(dir);
  return dir;
}

void Touch(const fs::path& path, const std::string& text = "") {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A directory a finished run left: two checkpoints, metrics, DONE, logs, a trace, and job/ of
// a Slurm submission (not the run's to delete).
fs::path UsedRunDir(const std::string& name) {
  const fs::path dir = FreshDir(name);
  Touch(dir / "checkpoints" / "step-00000002" / "model.h5");
  Touch(dir / "checkpoints" / "step-00000004" / "model.h5");
  Touch(dir / "checkpoints" / "latest", "step-00000004\n");
  Touch(dir / "metrics.jsonl", "{\"step\":1}\n{\"step\":2}\n");
  Touch(dir / "DONE", "step 4\n");
  Touch(dir / "logs" / "rank-0.log", "old\n");
  Touch(dir / "trace.json", "{}");
  Touch(dir / "job" / "recipe.yaml", "run: {}\n");
  return dir;
}

TEST(RunDirLock, ASecondHolderIsRefusedNamingHostAndPid) {
  const fs::path dir = FreshDir("lock");
  RunDirLock first(dir.string());
  ASSERT_TRUE(first.held());
  std::ifstream in(run_dir_lock_path(dir.string()));
  std::string host, pid;
  in >> host >> pid;
  EXPECT_EQ(pid, std::to_string(::getpid()));
  try {
    RunDirLock second(dir.string());  // another open file description: flock refuses it
    FAIL() << "expected RunDirRefused";
  } catch (const RunDirRefused& e) {
    EXPECT_EQ(e.exit_status(), 1);
    EXPECT_CONTAINS(e.what(), "run.dir " + dir.string() + " is in use");
    EXPECT_CONTAINS(e.what(), "host " + host + ", pid " + pid);
  }
  // Released with its holder (here its destructor; a dead process's descriptors close too).
  first = RunDirLock();
  RunDirLock third(dir.string());
  EXPECT_TRUE(third.held());
  EXPECT_EQ(third.warning(), "");
}

TEST(RunDirClaim, PreviousRunIsWhatCheckpointsOrMetricsShow) {
  const fs::path dir = FreshDir("previous");
  EXPECT_EQ(previous_run_in(dir.string()), "");  // does not exist
  Touch(dir / "recipe.yaml");
  Touch(dir / "logs" / "rank-0.log");
  Touch(dir / "metrics.jsonl");  // empty: a run that died before its first step
  fs::create_directories(dir / "checkpoints" / ".tmp-step-00000001");
  EXPECT_EQ(previous_run_in(dir.string()), "");
  Touch(dir / "checkpoints" / "step-00000003" / "model.h5");
  EXPECT_EQ(previous_run_in(dir.string()), "checkpoints/ (step-00000003)");
  Touch(dir / "metrics.jsonl", "{}\n{}\n{}\n");
  Touch(dir / "checkpoints" / "latest", "step-00000003\n");
  EXPECT_EQ(previous_run_in(dir.string()),
            "checkpoints/ (latest: step-00000003), metrics.jsonl (3 step(s))");
}

TEST(RunDirClaim, FreshRunIntoAUsedDirectoryIsRefusedAndTouchesNothing) {
  const fs::path dir = UsedRunDir("fresh");
  const auto world = parallel::FakeComm::create_world(1);
  try {
    claim_run_dir(dir.string(), RunDirUse::kFresh, *world[0]);
    FAIL() << "expected RunDirRefused";
  } catch (const RunDirRefused& e) {
    EXPECT_EQ(e.exit_status(), 2);
    EXPECT_CONTAINS(e.what(), "run.dir " + dir.string() + " already holds a training run");
    EXPECT_CONTAINS(e.what(), "latest: step-00000004");
    EXPECT_CONTAINS(e.what(), "--resume auto");
    EXPECT_CONTAINS(e.what(), "--overwrite");
  }
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "step-00000004" / "model.h5"));
  EXPECT_TRUE(fs::exists(dir / "metrics.jsonl"));
  // The refused claim let go of the lock.
  EXPECT_TRUE(RunDirLock(dir.string()).held());
}

TEST(RunDirClaim, ResumeIsLetThroughAndOverwriteRemovesOnlyTheRunsFiles) {
  const fs::path dir = UsedRunDir("overwrite");
  const auto world = parallel::FakeComm::create_world(1);
  {
    const RunDirLock lock = claim_run_dir(dir.string(), RunDirUse::kResume, *world[0]);
    EXPECT_TRUE(lock.held());
    EXPECT_TRUE(fs::exists(dir / "checkpoints" / "latest"));
  }
  const RunDirLock lock = claim_run_dir(dir.string(), RunDirUse::kOverwrite, *world[0]);
  EXPECT_TRUE(lock.held());
  for (const char* gone : {"checkpoints", "metrics.jsonl", "DONE", "logs", "trace.json"}) {
    EXPECT_FALSE(fs::exists(dir / gone)) << gone;
  }
  EXPECT_TRUE(fs::exists(dir / "job" / "recipe.yaml"));
  EXPECT_TRUE(fs::exists(run_dir_lock_path(dir.string())));
  EXPECT_EQ(previous_run_in(dir.string()), "");
}

TEST(RunDirClaim, FreshClaimOfAnUnusedDirectoryCreatesItAndHoldsTheLock) {
  const fs::path dir = FreshDir("unused") / "nested";
  const auto world = parallel::FakeComm::create_world(1);
  const RunDirLock lock = claim_run_dir(dir.string(), RunDirUse::kFresh, *world[0]);
  EXPECT_TRUE(lock.held());
  EXPECT_THROW(RunDirLock{dir.string()}, RunDirRefused);
}

// What every rank of a claim got: the refusal's status and message, or 0 and "".
struct Verdict {
  int status = 0;
  std::string message;
  bool held = false;
};

std::vector<Verdict> ClaimOnRanks(int n, const fs::path& dir, RunDirUse use) {
  std::vector<Verdict> verdicts(n);
  parallel::run_fake_ranks(n, [&](parallel::Comm& comm) {
    Verdict& v = verdicts[comm.rank()];
    try {
      v.held = claim_run_dir(dir.string(), use, comm).held();
    } catch (const RunDirRefused& e) {
      v.status = e.exit_status();
      v.message = e.what();
    }
  });
  return verdicts;
}

TEST(RunDirClaim, EveryRankGetsRankZerosVerdict) {
  const fs::path dir = UsedRunDir("ranks");
  {
    const RunDirLock other_run(dir.string());  // another run holds the directory
    const std::vector<Verdict> v = ClaimOnRanks(3, dir, RunDirUse::kResume);
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(v[r].status, 1) << "rank " << r;
      EXPECT_EQ(v[r].message, v[0].message) << "rank " << r;
    }
    EXPECT_CONTAINS(v[0].message, "pid " + std::to_string(::getpid()));
  }
  std::vector<Verdict> v = ClaimOnRanks(3, dir, RunDirUse::kFresh);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(v[r].status, 2) << "rank " << r;
    EXPECT_EQ(v[r].message, v[0].message) << "rank " << r;
  }
  EXPECT_CONTAINS(v[0].message, "--overwrite");
  v = ClaimOnRanks(3, dir, RunDirUse::kOverwrite);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(v[r].status, 0) << "rank " << r << ": " << v[r].message;
    EXPECT_EQ(v[r].held, r == 0) << "rank " << r;  // rank 0 alone holds the lock
  }
  EXPECT_FALSE(fs::exists(dir / "checkpoints"));
}

}  // namespace
}  // namespace tessera::trainer
