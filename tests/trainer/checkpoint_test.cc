// Checkpoint files in one process (testing::Self()): hyperslab slices of global tensors, the round
// trip of parameters, moments and meta, checksums catching damage (in model.h5, and an edited
// trainer.yaml; format 2 files still read), model mismatches, retention and the choice of
// checkpoints to resume from, with why a directory was skipped. Multi-rank writes and resharding
// are tested end to end by resume_test.py under mpirun.
#include "trainer/checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "tests/trainer/checkpoint_harness.h"
#include "tests/trainer/staged_cpu_backend.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/model.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    testing::SelfHolder() = parallel::MpiComm::world();
  }
  void TearDown() override {
    testing::SelfHolder().reset();
    MPI_Finalize();
  }
};
const auto* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

using testing::FreshDir;
using testing::ReadBack;
using testing::Save;
using testing::SmallRecipe;
using testing::Trainee;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

void WriteText(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// `text` with the first `from` replaced by `to` (which must be there).
std::string Replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// trainer.yaml as format 2 wrote it: without the content_checksum line.
std::string AsFormat2(const std::string& text) {
  const size_t at = text.rfind("content_checksum:");
  EXPECT_NE(at, std::string::npos);
  return Replaced(text.substr(0, at), "format_version: 3", "format_version: 2");
}

#define EXPECT_DAMAGE(statement, needle)                                         \
  try {                                                                          \
    statement;                                                                   \
    ADD_FAILURE() << "expected CheckpointDamaged from " #statement;              \
  } catch (const CheckpointDamaged& e) {                                         \
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what(); \
  }

// Slices of a 3-D tensor written in pieces of random lengths land where a whole write puts them,
// and random slices read back equal the same elements of the whole.
TEST(Checkpoint, FlatSlicesOfNdTensorsRoundTrip) {
  const fs::path dir = FreshDir("slices");
  fs::create_directories(dir);
  const std::vector<int64_t> shape{3, 5, 7};
  const int64_t n = 3 * 5 * 7;
  std::vector<float> whole(n);
  for (int64_t i = 0; i < n; ++i) whole[i] = static_cast<float>(i) + 0.5f;
  std::mt19937 rng(7);
  {
    H5File f((dir / "t.h5").string(), testing::Self());
    f.create_f32("x", shape);
    for (int64_t at = 0; at < n;) {
      const int64_t len = std::min<int64_t>(n - at, 1 + rng() % 40);
      f.write_f32_slice("x", at, at + len, whole.data() + at);
      at += len;
    }
    f.close();
  }
  H5File r((dir / "t.h5").string(), H5File::Mode::kReadOnly);
  std::vector<float> back(n);
  r.read_f32("x", shape, back.data());
  EXPECT_EQ(back, whole);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t b = rng() % n, e = b + rng() % (n - b + 1);
    std::vector<float> part(e - b);
    r.read_f32_slice("x", shape, b, e, part.data());
    for (int64_t i = b; i < e; ++i) ASSERT_EQ(part[i - b], whole[i]) << "slice [" << b << ", " << e << ")";
  }
  EXPECT_THROW(r.read_f32_slice("x", shape, 0, n + 1, back.data()), std::runtime_error);
}

TEST(Checkpoint, SaveReadRoundTripsParametersMomentsAndMeta) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  const fs::path dir = FreshDir("roundtrip");
  const std::string step_dir = Save(a, r, dir, 7);
  EXPECT_EQ(fs::path(step_dir).filename(), "step-00000007");
  EXPECT_EQ(resolve_checkpoint(dir.string()), step_dir);
  EXPECT_TRUE(verify_checkpoint(step_dir).empty());
  const CheckpointMeta meta =
      read_checkpoint(testing::Self(), step_dir, b.tensors, b.slices.reads(), b.slices.owned());
  EXPECT_EQ(meta.step, 7);
  EXPECT_EQ(meta.tokens_seen, 700);
  EXPECT_EQ(meta.loader_cursor, 5u);
  EXPECT_EQ(meta.optimizer_step, 7);
  ParamTable& pa = a.model.params();
  ParamTable& pb = b.model.params();
  for (int64_t i = 0; i < pa.padded_numel(); ++i) {
    ASSERT_EQ(pa.values().data<float>()[i], pb.values().data<float>()[i]) << i;
  }
  // Moments of trainable parameters round-trip (frozen gate.bias has none).
  for (size_t k = 0; k < a.optimizer.shards().size(); ++k) {
    for (const ParamDesc& d : pa.descs()) {
      if (!d.trainable) continue;
      const int64_t base = a.optimizer.shards()[k].begin;
      if (d.offset < base || d.offset >= a.optimizer.shards()[k].end) continue;
      for (int64_t j = 0; j < d.numel(); ++j) {
        ASSERT_EQ(b.optimizer.exp_avg(k)[d.offset - base + j], a.optimizer.exp_avg(k)[d.offset - base + j]);
        ASSERT_EQ(b.optimizer.exp_avg_sq(k)[d.offset - base + j],
                  a.optimizer.exp_avg_sq(k)[d.offset - base + j]);
      }
    }
  }
  // The whole-model reader (eval) sees the same values.
  kernels::CpuBackend cpu;
  Model c(r.model, cpu);
  EXPECT_EQ(load_checkpoint(step_dir, c.params()), 7);
  EXPECT_EQ(c.params().value(0).data<float>()[3], pa.value(0).data<float>()[3]);
  const CheckpointInfo info = read_checkpoint_info(step_dir);
  EXPECT_EQ(info.checksums.size(), a.tensors.size());
  EXPECT_NE(info.layout.find("pp=1"), std::string::npos);
}

// One flipped byte in a dataset's data is reported by name, by the collective reader (as damage)
// and by verify.
TEST(Checkpoint, CorruptByteIsDamageNamingTheDataset) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  const fs::path dir = FreshDir("corrupt");
  const std::string step_dir = Save(a, r, dir, 1);
  const std::string victim = "layers.1.moe.experts.w2";
  haddr_t offset = HADDR_UNDEF;
  {
    hid_t f = H5Fopen((fs::path(step_dir) / "model.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, victim.c_str(), H5P_DEFAULT);
    offset = H5Dget_offset(ds);
    H5Dclose(ds);
    H5Fclose(f);
  }
  ASSERT_NE(offset, HADDR_UNDEF);
  {
    std::fstream io(fs::path(step_dir) / "model.h5", std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(offset + 5));
    char c = 0;
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    io.seekp(static_cast<std::streamoff>(offset + 5));
    io.write(&c, 1);
  }
  try {
    read_checkpoint(testing::Self(), step_dir, b.tensors, b.slices.reads(), b.slices.owned());
    FAIL() << "expected CheckpointDamaged";
  } catch (const CheckpointDamaged& e) {
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
  const std::vector<std::string> problems = verify_checkpoint(step_dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(victim), std::string::npos) << problems[0];
  // tessera eval's whole-model load checks what it reads too.
  kernels::CpuBackend cpu;
  Model c(r.model, cpu);
  EXPECT_DAMAGE(load_checkpoint(step_dir, c.params()), "checksum mismatch in " + victim);
}

// trainer.yaml checks itself: `step: 7` edited to 999 is damage for every reader, not a run that
// resumes past its last step.
TEST(Checkpoint, EditedTrainerYamlIsDamage) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  const std::string step_dir = Save(a, r, FreshDir("edited"), 7);
  const fs::path yaml = fs::path(step_dir) / "trainer.yaml";
  const std::string original = ReadText(yaml);
  EXPECT_NE(original.find("\ncontent_checksum: xxh64:"), std::string::npos) << original;
  WriteText(yaml, Replaced(original, "step: 7", "step: 999"));
  EXPECT_DAMAGE(read_checkpoint_info(step_dir), "content_checksum mismatch");
  EXPECT_DAMAGE(ReadBack(b, step_dir),
                "trainer.yaml: content_checksum mismatch");
  kernels::CpuBackend cpu;
  Model c(r.model, cpu);
  EXPECT_DAMAGE(load_checkpoint(step_dir, c.params()), "content_checksum mismatch");
  const std::vector<std::string> problems = verify_checkpoint(step_dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("content_checksum mismatch"), std::string::npos) << problems[0];
  // Cut off (no checksum line) in format 3 is damage too.
  WriteText(yaml, original.substr(0, original.rfind("content_checksum:")));
  EXPECT_DAMAGE(read_checkpoint_info(step_dir), "no content_checksum line");
}

// Format 2 (before the content checksum) is still read; model.h5's own step attribute still
// catches the edit of trainer.yaml's step there.
TEST(Checkpoint, Format2TrainerYamlIsReadAndItsStepCheckedAgainstModelH5) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  const std::string step_dir = Save(a, r, FreshDir("format2"), 7);
  const fs::path yaml = fs::path(step_dir) / "trainer.yaml";
  const std::string v2 = AsFormat2(ReadText(yaml));
  WriteText(yaml, v2);
  EXPECT_EQ(read_checkpoint_info(step_dir).format_version, 2);
  EXPECT_TRUE(verify_checkpoint(step_dir).empty());
  EXPECT_EQ(ReadBack(b, step_dir).step, 7);
  WriteText(yaml, Replaced(v2, "step: 7", "step: 999"));
  EXPECT_DAMAGE(ReadBack(b, step_dir),
                "is of step 7 but trainer.yaml says step 999");
  kernels::CpuBackend cpu;
  Model c(r.model, cpu);
  EXPECT_DAMAGE(load_checkpoint(step_dir, c.params()),
                "is of step 7 but trainer.yaml says step 999");
  EXPECT_FALSE(verify_checkpoint(step_dir).empty());
  WriteText(yaml, Replaced(v2, "format_version: 2", "format_version: 1"));
  EXPECT_DAMAGE(read_checkpoint_info(step_dir), "format_version 1, this tessera reads 2 to 3");
}

TEST(Checkpoint, TruncatedOrIncompleteCheckpointsAreDamage) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3), b(r, 4);
  const fs::path dir = FreshDir("truncated");
  const std::string step_dir = Save(a, r, dir, 1);
  const fs::path h5 = fs::path(step_dir) / "model.h5";
  fs::resize_file(h5, fs::file_size(h5) / 2);
  EXPECT_THROW(
      read_checkpoint(testing::Self(), step_dir, b.tensors, b.slices.reads(), b.slices.owned()),
      CheckpointDamaged);
  EXPECT_FALSE(verify_checkpoint(step_dir).empty());
  fs::remove(fs::path(step_dir) / "trainer.yaml");
  EXPECT_THROW(read_checkpoint_info(step_dir), CheckpointDamaged);
}

// A different model is not damage: the error names the tensor whose shape differs.
TEST(Checkpoint, ModelMismatchNamesTheTensor) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3);
  const fs::path dir = FreshDir("mismatch");
  const std::string step_dir = Save(a, r, dir, 1);
  Recipe wider = r;
  wider.model.dim = 12;
  Trainee b(wider, 4);
  try {
    read_checkpoint(testing::Self(), step_dir, b.tensors, b.slices.reads(), b.slices.owned());
    FAIL() << "expected a shape error";
  } catch (const CheckpointDamaged& e) {
    FAIL() << "a model mismatch is not damage: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("embed.weight"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, RetentionAndResumeCandidates) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3);
  const fs::path dir = FreshDir("retention");
  for (int64_t step : {1, 2, 3}) Save(a, r, dir, step, /*keep_last=*/2);
  EXPECT_FALSE(fs::exists(dir / "step-00000001"));
  EXPECT_TRUE(fs::exists(dir / "step-00000002"));
  // A crash mid-write leaves only a temporary directory, which is never a candidate; `latest`
  // comes first, then the others newest first.
  fs::create_directories(dir / ".tmp-step-00000004");
  std::ofstream(dir / "latest") << "step-00000002\n";
  const std::vector<std::string> c = resume_candidates(dir.string());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(fs::path(c[0]).filename(), "step-00000002");
  EXPECT_EQ(fs::path(c[1]).filename(), "step-00000003");
  EXPECT_TRUE(resume_candidates((dir / "nothing").string()).empty());
  // Saving an earlier step (a run resumed from step 2) drops the later, abandoned step 3.
  Save(a, r, dir, 2, /*keep_last=*/2);
  EXPECT_FALSE(fs::exists(dir / "step-00000003"));
  EXPECT_TRUE(fs::exists(dir / "step-00000002"));
  EXPECT_THROW(resolve_checkpoint(FreshDir("none").string()), std::runtime_error);
}

// --resume auto says why it passes over a step directory: `latest` naming one without
// trainer.yaml, one without model.h5, one that does not exist.
TEST(Checkpoint, ResumeCandidatesSayWhatIsMissing) {
  const Recipe r = SmallRecipe();
  Trainee a(r, 3);
  const fs::path dir = FreshDir("skipped");
  for (int64_t step : {1, 2, 3}) Save(a, r, dir, step);
  fs::remove(dir / "step-00000003" / "trainer.yaml");  // `latest` names it
  fs::remove(dir / "step-00000002" / "model.h5");
  std::vector<std::string> skipped;
  std::vector<std::string> c = resume_candidates(dir.string(), &skipped);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(fs::path(c[0]).filename(), "step-00000001");
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_EQ(skipped[0], (dir / "step-00000003").string() + " (named by " +
                            (dir / "latest").string() + "): no trainer.yaml");
  EXPECT_EQ(skipped[1], (dir / "step-00000002").string() + ": no model.h5");
  std::ofstream(dir / "latest") << "step-00000009\n";
  skipped.clear();
  c = resume_candidates(dir.string(), &skipped);
  ASSERT_FALSE(skipped.empty());
  EXPECT_NE(skipped[0].find("step-00000009 (named by"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find("): does not exist"), std::string::npos) << skipped[0];
}

// tessera eval's load on a device: the values arrive through a host copy, equal to the host path.
TEST(Checkpoint, LoadIntoADeviceModelGoesThroughTheHost) {
  const Recipe r = SmallRecipe();
  Trainee saved(r, 3);
  const fs::path dir = FreshDir("load-device");
  const std::string step_dir = Save(saved, r, dir, 5);
  kernels::CpuBackend cpu;
  testing::StagedCpuBackend staged;
  Model on_host(r.model, cpu), on_device(r.model, staged);
  EXPECT_EQ(load_checkpoint(step_dir, on_host.params()), 5);
  EXPECT_EQ(load_checkpoint(step_dir, on_device.params()), 5);
  EXPECT_GT(staged.from_host, 0);
  const int64_t n = on_host.params().padded_numel();
  const float* a = on_host.params().values().data<float>();
  const float* b = on_device.params().values().data<float>();
  EXPECT_EQ(std::vector<float>(a, a + n), std::vector<float>(b, b + n));
}

}  // namespace
}  // namespace tessera::trainer
