// Checkpoint saves under injected file-system faults (trainer/checkpoint/env.h), in one process:
// a FaultyEnv fails the Nth call of any operation of a save with ENOSPC, EIO or a short write,
// or crashes there (or at a named SavePoint) by throwing an exception no clean-up catches. After
// every fault the save's error names the file and strerror's text, no temporary file is left
// (unless it crashed), `latest` names a complete checkpoint that verifies and loads, and
// `--resume auto` resumes from it. Also: the POSIX env's own errors, and CrashingEnv's spec.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/trainer/checkpoint_harness.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/crashing_env.h"
#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/resume.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;
using testing::FreshDir;
using testing::ReadBack;
using testing::Save;
using testing::SmallRecipe;
using testing::Trainee;

// The operations a FaultyEnv can fail (FileExists and DirExists answer false on errors).
enum class Op { kCreateDir, kWriteFile, kReadFile, kRename, kRemoveAll, kListDir, kSyncFile, kSyncDir };
constexpr Op kOps[] = {Op::kCreateDir, Op::kWriteFile, Op::kReadFile, Op::kRename,
                       Op::kRemoveAll, Op::kListDir,   Op::kSyncFile, Op::kSyncDir};

const char* OpName(Op op) {
  switch (op) {
    case Op::kCreateDir: return "CreateDir";
    case Op::kWriteFile: return "WriteFile";
    case Op::kReadFile: return "ReadFile";
    case Op::kRename: return "Rename";
    case Op::kRemoveAll: return "RemoveAll";
    case Op::kListDir: return "ListDir";
    case Op::kSyncFile: return "SyncFile";
    case Op::kSyncDir: return "SyncDir";
  }
  return "?";
}

enum class Fault { kEnospc, kEio, kShortWrite, kCrash };
const char* FaultName(Fault f) {
  switch (f) {
    case Fault::kEnospc: return "ENOSPC";
    case Fault::kEio: return "EIO";
    case Fault::kShortWrite: return "short write";
    case Fault::kCrash: return "crash";
  }
  return "?";
}

// A simulated crash: deliberately not a std::exception, so that no `catch (const
// std::exception&)` clean-up of the code under test runs, as none would after a real crash.
struct SimulatedCrash {
  std::string where;
};

// Forwards to a real env, counting calls per operation; fails one chosen call.
class FaultyEnv : public CheckpointEnvWrapper {
 public:
  explicit FaultyEnv(CheckpointEnv& base) : CheckpointEnvWrapper(base) {}

  // The nth (from 1) call of `op` fails with `fault` (a short write: half the data is written,
  // then ENOSPC, as write(2) reports a full disk after a partial write).
  void FailNth(Op op, int n, Fault fault) {
    fail_op_ = op;
    fail_n_ = n;
    fault_ = fault;
  }
  void CrashAt(SavePoint point) { crash_point_ = point; }

  int calls(Op op) const {
    const auto it = calls_.find(op);
    return it == calls_.end() ? 0 : it->second;
  }
  const std::string& failed_path() const { return failed_path_; }
  // The new step directory was renamed into place (complete, though `latest` may not name it).
  bool renamed() const { return renamed_; }

  void CreateDir(const std::string& path) override {
    Call(Op::kCreateDir, path, "mkdir");
    base().CreateDir(path);
  }
  void WriteFile(const std::string& path, const std::string& data) override {
    if (Due(Op::kWriteFile) && fault_ == Fault::kShortWrite) {
      failed_path_ = path;
      base().WriteFile(path, data.substr(0, data.size() / 2));
      throw std::runtime_error(path + ": write: " + std::strerror(ENOSPC));
    }
    Inject(Op::kWriteFile, path, "write");
    base().WriteFile(path, data);
  }
  std::string ReadFile(const std::string& path) override {
    Call(Op::kReadFile, path, "read");
    return base().ReadFile(path);
  }
  void Rename(const std::string& from, const std::string& to) override {
    Call(Op::kRename, from, "rename to " + to);
    base().Rename(from, to);
    if (fs::path(to).filename().string().rfind("step-", 0) == 0) renamed_ = true;
  }
  void RemoveAll(const std::string& path) override {
    Call(Op::kRemoveAll, path, "remove");
    base().RemoveAll(path);
  }
  std::vector<DirEntry> ListDir(const std::string& path) override {
    Call(Op::kListDir, path, "opendir");
    return base().ListDir(path);
  }
  void SyncFile(const std::string& path) override {
    Call(Op::kSyncFile, path, "fsync");
    base().SyncFile(path);
  }
  void SyncDir(const std::string& path) override {
    Call(Op::kSyncDir, path, "fsync");
    base().SyncDir(path);
  }
  void Reached(SavePoint point, int64_t step) override {
    if (crash_point_ == point) throw SimulatedCrash{save_point_name(point)};
    base().Reached(point, step);
  }

 private:
  // Counts the call; true when it is the one to fail.
  bool Due(Op op) { return ++calls_[op] == fail_n_ && op == fail_op_; }
  void Call(Op op, const std::string& path, const std::string& what) {
    if (Due(op)) Fail(path, what);
  }
  // For WriteFile, whose call was counted by Due already.
  void Inject(Op op, const std::string& path, const std::string& what) {
    if (op == fail_op_ && calls_[op] == fail_n_) Fail(path, what);
  }
  void Fail(const std::string& path, const std::string& what) {
    failed_path_ = path;
    switch (fault_) {
      case Fault::kCrash: throw SimulatedCrash{path};
      case Fault::kEio: throw std::runtime_error(path + ": " + what + ": " + std::strerror(EIO));
      case Fault::kEnospc:
      case Fault::kShortWrite:
        throw std::runtime_error(path + ": " + what + ": " + std::strerror(ENOSPC));
    }
  }

  std::map<Op, int> calls_;
  Op fail_op_ = Op::kCreateDir;
  int fail_n_ = 0;
  Fault fault_ = Fault::kEnospc;
  std::optional<SavePoint> crash_point_;
  std::string failed_path_;
  bool renamed_ = false;
};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

// What a run in `run_dir` holds after a save of step 2 over a complete step 1 failed (or crashed,
// `crashed`): `latest` names a complete checkpoint (step 1, or step 2 once it was renamed into
// place), no temporary file is left unless the save crashed, and the checkpoint `latest` names
// verifies, loads (collectively and for evaluation) and is what `--resume auto` resumes from.
void ExpectLastCompleteCheckpointIntact(const Recipe& r, const fs::path& run_dir, bool renamed,
                                        bool crashed, const std::string& context) {
  SCOPED_TRACE(context);
  const fs::path checkpoints = run_dir / "checkpoints";
  std::string latest = ReadText(checkpoints / "latest");
  while (!latest.empty() && latest.back() == '\n') latest.pop_back();
  if (renamed) {
    EXPECT_TRUE(latest == "step-00000001" || latest == "step-00000002") << latest;
  } else {
    EXPECT_EQ(latest, "step-00000001");
    EXPECT_FALSE(fs::exists(checkpoints / "step-00000002"));
  }
  if (!crashed) {
    EXPECT_FALSE(fs::exists(checkpoints / ".tmp-step-00000002")) << "the partial directory is left";
    EXPECT_FALSE(fs::exists(checkpoints / "latest.tmp"));
  }
  const fs::path step_dir = checkpoints / latest;
  const int64_t step = latest == "step-00000002" ? 2 : 1;
  EXPECT_EQ(verify_checkpoint(step_dir.string()), std::vector<std::string>{});
  Trainee c(r, 9);
  EXPECT_EQ(ReadBack(c, step_dir.string()).step, step);
  EXPECT_EQ(load_checkpoint(step_dir.string(), c.model.params()), step);
  Recipe resumed = r;
  resumed.run.dir = run_dir.string();
  std::ostringstream log;
  const CheckpointMeta meta =
      resume_from_checkpoint("auto", resumed, testing::Self(), c.tensors, c.slices, log);
  EXPECT_EQ(meta.step, step) << log.str();
  EXPECT_NE(log.str().find("resumed from " + step_dir.string()), std::string::npos) << log.str();
}

// Every call of every operation of a save, failed with each fault in turn.
TEST(CheckpointEnv, EveryFailedOperationOfASaveKeepsTheLastCompleteCheckpoint) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  // The calls of a save of step 2 over step 1 (keep_last 1: retention removes step 1).
  FaultyEnv counting(CheckpointEnv::Posix());
  {
    const fs::path run_dir = FreshDir("env_count");
    Save(a, r, run_dir / "checkpoints", 1, 1);
    Save(b, r, run_dir / "checkpoints", 2, 1, counting);
  }
  for (Op op : {Op::kCreateDir, Op::kWriteFile, Op::kRename, Op::kRemoveAll, Op::kListDir,
                Op::kSyncFile, Op::kSyncDir}) {
    EXPECT_GT(counting.calls(op), 0) << OpName(op) << " is not used by a save";
  }
  int cases = 0;
  for (Op op : kOps) {
    for (int n = 1; n <= counting.calls(op); ++n) {
      for (Fault fault : {Fault::kEnospc, Fault::kEio, Fault::kShortWrite, Fault::kCrash}) {
        if (fault == Fault::kShortWrite && op != Op::kWriteFile) continue;
        const std::string context = std::string(OpName(op)) + " call " + std::to_string(n) +
                                    ": " + FaultName(fault);
        const fs::path run_dir = FreshDir("env_fault");
        Save(a, r, run_dir / "checkpoints", 1, 1);
        FaultyEnv env(CheckpointEnv::Posix());
        env.FailNth(op, n, fault);
        bool crashed = false;
        try {
          Save(b, r, run_dir / "checkpoints", 2, 1, env);
          ADD_FAILURE() << context << ": the save succeeded";
        } catch (const SimulatedCrash&) {
          crashed = true;
        } catch (const CheckpointSaveFailed& e) {
          const std::string what = e.what();
          EXPECT_NE(what.find(env.failed_path()), std::string::npos) << context << ": " << what;
          const char* reason = std::strerror(fault == Fault::kEio ? EIO : ENOSPC);
          EXPECT_NE(what.find(reason), std::string::npos) << context << ": " << what;
        }
        EXPECT_EQ(crashed, fault == Fault::kCrash) << context;
        ExpectLastCompleteCheckpointIntact(r, run_dir, env.renamed(), crashed, context);
        if (crashed) {
          // The run resumed: its next save of the same step cleans up and succeeds.
          Save(b, r, run_dir / "checkpoints", 2, 1);
          EXPECT_EQ(verify_checkpoint((run_dir / "checkpoints" / "step-00000002").string()),
                    std::vector<std::string>{})
              << context;
          EXPECT_FALSE(fs::exists(run_dir / "checkpoints" / ".tmp-step-00000002")) << context;
        }
        ++cases;
      }
    }
  }
  EXPECT_GE(cases, 30);
}

// A crash at each named point of a save (where TESSERA_CHECKPOINT_CRASH stops `tessera train`):
// `--resume auto` resumes from the last complete checkpoint.
TEST(CheckpointEnv, CrashAtEachSavePointResumesFromTheLastCompleteCheckpoint) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  for (SavePoint point : {SavePoint::kCreated, SavePoint::kWritten, SavePoint::kClosed,
                          SavePoint::kRenamed}) {
    const std::string context = std::string("crash at ") + save_point_name(point);
    const fs::path run_dir = FreshDir("env_crash");
    Save(a, r, run_dir / "checkpoints", 1);
    FaultyEnv env(CheckpointEnv::Posix());
    env.CrashAt(point);
    EXPECT_THROW(Save(b, r, run_dir / "checkpoints", 2, 3, env), SimulatedCrash) << context;
    EXPECT_EQ(env.renamed(), point == SavePoint::kRenamed);
    ExpectLastCompleteCheckpointIntact(r, run_dir, env.renamed(), /*crashed=*/true, context);
    // Step 2 counts as a candidate only once it is complete (renamed into place).
    const std::vector<std::string> candidates =
        resume_candidates((run_dir / "checkpoints").string());
    ASSERT_FALSE(candidates.empty()) << context;
    EXPECT_EQ(fs::path(candidates[0]).filename(), "step-00000001") << context;
    EXPECT_EQ(candidates.size(), point == SavePoint::kRenamed ? 2u : 1u) << context;
  }
}

// The real file system's errors name the file and say why, in strerror's words.
TEST(CheckpointEnv, PosixErrorsNameThePathAndStrerror) {
  CheckpointEnv& env = CheckpointEnv::Posix();
  const fs::path dir = FreshDir("env_posix");
  env.CreateDir((dir / "a" / "b").string());
  EXPECT_TRUE(env.DirExists((dir / "a" / "b").string()));
  env.WriteFile((dir / "a" / "f").string(), "hello\n");
  EXPECT_TRUE(env.FileExists((dir / "a" / "f").string()));
  EXPECT_FALSE(env.FileExists((dir / "a" / "b").string()));
  EXPECT_EQ(env.ReadFile((dir / "a" / "f").string()), "hello\n");
  std::vector<DirEntry> entries = env.ListDir((dir / "a").string());
  std::sort(entries.begin(), entries.end(),
            [](const DirEntry& x, const DirEntry& y) { return x.name < y.name; });
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "b");
  EXPECT_TRUE(entries[0].is_dir);
  EXPECT_FALSE(entries[1].is_dir);
  env.SyncFile((dir / "a" / "f").string());
  env.SyncDir((dir / "a").string());
  write_file_atomically(env, (dir / "a" / "latest").string(), "x\n");
  EXPECT_EQ(env.ReadFile((dir / "a" / "latest").string()), "x\n");
  EXPECT_FALSE(env.FileExists((dir / "a" / "latest.tmp").string()));

  auto expect_error = [](auto&& call, const std::string& path, int err) {
    try {
      call();
      ADD_FAILURE() << "expected an error about " << path;
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(std::strerror(err)), std::string::npos) << what;
    }
  };
  // /dev/full: every write fails with ENOSPC, as on a full disk.
  if (fs::exists("/dev/full")) {
    expect_error([&] { env.WriteFile("/dev/full", "data"); }, "/dev/full", ENOSPC);
  }
  const std::string missing = (dir / "missing" / "f").string();
  expect_error([&] { env.WriteFile(missing, "x"); }, missing, ENOENT);
  expect_error([&] { env.ReadFile(missing); }, missing, ENOENT);
  expect_error([&] { env.Rename(missing, (dir / "g").string()); }, missing, ENOENT);
  expect_error([&] { env.ListDir(missing); }, missing, ENOENT);
  expect_error([&] { env.SyncDir(missing); }, missing, ENOENT);
  const std::string file = (dir / "a" / "f").string();
  expect_error([&] { env.CreateDir(file + "/sub"); }, file, ENOTDIR);
  // A failed atomic write leaves neither the file nor its temporary.
  expect_error([&] { write_file_atomically(env, missing, "x"); }, missing, ENOENT);
  env.RemoveAll((dir / "a").string());
  EXPECT_FALSE(env.DirExists((dir / "a").string()));
  env.RemoveAll((dir / "a").string());  // a missing path is fine
}

TEST(CheckpointEnv, CrashingEnvSpec) {
  CheckpointEnv& posix = CheckpointEnv::Posix();
  for (const char* bad : {"", "written@", "writen", "closed@x", "renamed@4@5"}) {
    EXPECT_THROW(CrashingEnv(posix, bad), std::invalid_argument) << bad;
  }
  CrashingEnv at_step(posix, "written@4");
  at_step.Reached(SavePoint::kWritten, 2);  // another step's save: goes on
  at_step.Reached(SavePoint::kClosed, 4);   // another point: goes on
  EXPECT_EXIT(at_step.Reached(SavePoint::kWritten, 4), ::testing::KilledBySignal(SIGKILL),
              "TESSERA_CHECKPOINT_CRASH=written@4: killing myself now");
  CrashingEnv any_step(posix, "created");
  EXPECT_EXIT(any_step.Reached(SavePoint::kCreated, 7), ::testing::KilledBySignal(SIGKILL), "");
}

}  // namespace
}  // namespace tessera::trainer
