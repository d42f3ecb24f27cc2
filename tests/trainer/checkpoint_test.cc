#include "trainer/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "trainer/model.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

Recipe SmallRecipe() {
  Recipe r;
  r.source = "test";
  r.data.path = "unused";
  r.model.vocab_size = 11;
  r.model.dim = 8;
  r.model.n_layers = 2;
  r.model.n_heads = 2;
  r.model.inter_dim = 12;
  r.model.moe_inter_dim = 4;
  r.model.n_experts = 4;
  r.model.top_k = 2;
  return r;
}

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("tessera_ckpt_" + name);
  fs::remove_all(dir);
  return dir;
}

TEST(Checkpoint, SaveLoadRoundTripsParametersAndMoments) {
  const Recipe r = SmallRecipe();
  Model a(r.model), b(r.model);
  a.params().init(3, 0.1);
  a.params().allocate_moments();
  b.params().allocate_moments();
  float* m = a.params().exp_avg().data<float>();
  for (int64_t i = 0; i < a.params().numel(); ++i) m[i] = 0.001f * i;
  const fs::path dir = FreshDir("roundtrip");
  const std::string step_dir =
      save_checkpoint(dir.string(), a.params(), {7, 700, 1, 5}, r, /*keep_last=*/2);
  EXPECT_EQ(fs::path(step_dir).filename(), "step-00000007");
  EXPECT_EQ(resolve_checkpoint(dir.string()), step_dir);
  EXPECT_EQ(load_checkpoint(step_dir, b.params(), /*with_optimizer=*/true), 7);
  for (int64_t i = 0; i < a.params().numel(); ++i) {
    ASSERT_EQ(a.params().values().data<float>()[i], b.params().values().data<float>()[i]);
  }
  // Moments of trainable parameters round-trip (frozen gate.bias has none).
  for (const ParamDesc& d : a.params().descs()) {
    if (!d.trainable) continue;
    for (int64_t j = 0; j < d.numel(); ++j) {
      ASSERT_EQ(b.params().exp_avg().data<float>()[d.offset + j], m[d.offset + j]) << d.name;
    }
  }
  EXPECT_TRUE(fs::exists(fs::path(step_dir) / "trainer.yaml"));
}

TEST(Checkpoint, KeepsNewestAndIgnoresUnfinishedTemporaries) {
  const Recipe r = SmallRecipe();
  Model a(r.model);
  a.params().allocate_moments();
  const fs::path dir = FreshDir("retention");
  for (int64_t step : {1, 2, 3}) save_checkpoint(dir.string(), a.params(), {step}, r, 2);
  EXPECT_FALSE(fs::exists(dir / "step-00000001"));
  EXPECT_TRUE(fs::exists(dir / "step-00000002"));
  EXPECT_TRUE(fs::exists(dir / "step-00000003"));
  // A crash mid-write leaves only a temporary directory, which is never resolved.
  fs::create_directories(dir / ".tmp-step-00000004");
  std::ofstream(dir / ".tmp-step-00000004" / "model.h5") << "partial";
  EXPECT_EQ(fs::path(resolve_checkpoint(dir.string())).filename(), "step-00000003");
}

TEST(Checkpoint, ShapeMismatchAndMissingTensorNameTheTensor) {
  Recipe r = SmallRecipe();
  Model a(r.model);
  a.params().allocate_moments();
  const fs::path dir = FreshDir("mismatch");
  const std::string step_dir = save_checkpoint(dir.string(), a.params(), {1}, r, 1);
  Recipe wider = r;
  wider.model.dim = 12;
  Model b(wider.model);
  try {
    load_checkpoint(step_dir, b.params(), false);
    FAIL() << "expected a shape error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("embed.weight"), std::string::npos) << e.what();
  }
  Recipe deeper = r;
  deeper.model.n_layers = 3;
  Model c(deeper.model);
  try {
    load_checkpoint(step_dir, c.params(), false);
    FAIL() << "expected a missing-tensor error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.2."), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ResolveRejectsNonCheckpoints) {
  const fs::path dir = FreshDir("none");
  fs::create_directories(dir);
  EXPECT_THROW(resolve_checkpoint(dir.string()), std::runtime_error);
}

}  // namespace
}  // namespace tessera::trainer
