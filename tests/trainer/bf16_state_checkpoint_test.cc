// optimizer.state_dtype bf16 and checkpoints (trainer/checkpoint/staging.h): checkpoints hold the
// moments as float32 whatever the state dtype. Saving widens the bf16 moments (exact), loading
// rounds to nearest even, so widening then rounding gives back the same bits (a bf16 run resumes
// bit for bit), and a checkpoint written with either state dtype resumes into the other.
// One process (testing::Self(), made by checkpoint_test.cc's MPI environment).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "kernels/math/low_precision.h"
#include "parallel/fake_comm.h"
#include "tests/trainer/checkpoint_harness.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/checkpoint/staging.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

using kernels::math::bf16_to_float;
using kernels::math::float_to_bf16;
using testing::FreshDir;
using testing::Self;
using testing::SmallRecipe;

Recipe Bf16Recipe() {
  Recipe r = SmallRecipe();
  r.optimizer.state_dtype = "bf16";
  return r;
}

// A whole model with its bf16-state optimizer, checkpointed through CheckpointStaging as train()
// does. Moments of trainable slots hold bf16 patterns derived from `seed` (signs, subnormals,
// large and tiny exponents); values come from the seed too.
struct Bf16Trainee {
  Bf16Trainee(const Recipe& r, uint64_t seed)
      : comms(parallel::FakeComm::create_world(1)),
        model(r.model, cpu),
        optimizer(r.optimizer, model.params(), *comms[0], *comms[0]),
        tensors(checkpoint_tensors(r.model)),
        staging(model.params(), optimizer),
        slices(tensors, model.params(), optimizer, staging.buffers()) {
    model.params().init(seed, 0.1);
    // Only trainable parameters' moments are checkpointed; the other slots stay zero, as AdamW
    // leaves them.
    for (size_t k = 0; k < optimizer.shards().size(); ++k) {
      const FlatRange shard = optimizer.shards()[k];
      std::span<uint16_t> m = optimizer.exp_avg_bf16(k), v = optimizer.exp_avg_sq_bf16(k);
      for_each_trainable_piece(model.params(), shard, [&](const ParamDesc&, int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) {
          const uint32_t h = static_cast<uint32_t>(j + 1) * 2654435761u +
                             static_cast<uint32_t>(seed) * 40503u;
          m[j - shard.begin] = static_cast<uint16_t>((h >> 7) & 0xFF7Fu);   // finite
          v[j - shard.begin] = static_cast<uint16_t>((h >> 13) & 0x7F7Fu);  // >= 0, finite
        }
      });
    }
  }
  std::vector<uint16_t> Bits() {
    std::vector<uint16_t> out;
    for (size_t k = 0; k < optimizer.shards().size(); ++k) {
      for (std::span<uint16_t> s : {optimizer.exp_avg_bf16(k), optimizer.exp_avg_sq_bf16(k)}) {
        out.insert(out.end(), s.begin(), s.end());
      }
    }
    return out;
  }
  std::vector<float> Values() {
    const float* p = model.params().values().data<float>();
    return {p, p + model.params().padded_numel()};
  }
  std::vector<std::unique_ptr<parallel::FakeComm>> comms;
  kernels::CpuBackend cpu;
  Model model;
  ZeroOptimizer optimizer;
  std::vector<CheckpointTensor> tensors;
  CheckpointStaging staging;
  CheckpointSlices slices;
};

// fn(k, i) for every moment slot i of shard k that a checkpoint holds (trainable parameters).
template <typename Fn>
void ForCheckpointedMoments(ParamTable& params, ZeroOptimizer& optimizer, Fn&& fn) {
  for (size_t k = 0; k < optimizer.shards().size(); ++k) {
    const FlatRange shard = optimizer.shards()[k];
    for_each_trainable_piece(params, shard, [&](const ParamDesc&, int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) fn(k, static_cast<size_t>(j - shard.begin));
    });
  }
}

std::string SaveBf16(Bf16Trainee& t, const Recipe& r, const std::string& dir, int64_t step) {
  t.staging.to_host();
  const std::string written = write_checkpoint(Self(), dir, t.tensors, t.slices.owned(),
                                               {step, step * 100, 1, 5, step, 1}, r, 3);
  t.staging.release();
  return written;
}

void LoadBf16(Bf16Trainee& t, const std::string& step_dir) {
  read_checkpoint(Self(), step_dir, t.tensors, t.slices.reads(), t.slices.owned());
  t.staging.to_device();
}

TEST(Bf16StateCheckpoint, StagingWidensOnSaveAndRoundsOnLoadExactly) {
  Bf16Trainee t(Bf16Recipe(), 3);
  ASSERT_TRUE(t.staging.staged());  // moments are mirrored, values are the model's own
  EXPECT_EQ(t.staging.buffers().values, t.model.params().values().data<float>());
  EXPECT_THROW(model_buffers(t.model.params(), t.optimizer), std::logic_error);
  const std::vector<uint16_t> bits = t.Bits();
  t.staging.to_host();
  const CheckpointBuffers& b = t.staging.buffers();
  size_t at = 0, wrong = 0;
  for (size_t k = 0; k < t.optimizer.shards().size(); ++k) {
    const size_t n = t.optimizer.exp_avg_bf16(k).size();
    for (const float* mirror : {b.exp_avg.at(k), b.exp_avg_sq.at(k)}) {
      for (size_t i = 0; i < n; ++i) wrong += mirror[i] != bf16_to_float(bits[at + i]);
      at += n;
    }
  }
  EXPECT_EQ(at, bits.size());
  EXPECT_EQ(wrong, 0u) << "widening is not exact";
  // Loading the widened moments back gives the same bits.
  for (size_t k = 0; k < t.optimizer.shards().size(); ++k) {
    for (std::span<uint16_t> s : {t.optimizer.exp_avg_bf16(k), t.optimizer.exp_avg_sq_bf16(k)}) {
      std::fill(s.begin(), s.end(), uint16_t{0x3F80});  // 1.0: something else
    }
  }
  t.staging.to_device();
  EXPECT_EQ(t.Bits(), bits);
  // ... and float32 moments (a fp32-state checkpoint) are rounded to nearest even.
  t.staging.to_host();
  const float odd[] = {1.0f + 0x1p-8f,            // halfway, even below: 1.0
                       1.0f + 3 * 0x1p-8f,        // halfway, even above: 1 + 2^-6
                       -3.14159265f, 1e-40f, 0x1.fffffep127f};
  for (size_t i = 0; i < std::size(odd); ++i) b.exp_avg.at(0)[i] = odd[i];
  t.staging.to_device();
  for (size_t i = 0; i < std::size(odd); ++i) {
    EXPECT_EQ(t.optimizer.exp_avg_bf16(0)[i], float_to_bf16(odd[i])) << odd[i];
  }
  EXPECT_EQ(t.optimizer.exp_avg_bf16(0)[0], 0x3F80u);
  EXPECT_EQ(t.optimizer.exp_avg_bf16(0)[1], 0x3F82u);
  // to_device() handed the mirrors' pages back: they read as zeros until the next save.
  EXPECT_EQ(b.exp_avg.at(0)[2], 0.0f);
}

// Through real checkpoint files: bf16 -> bf16 is bit for bit; fp32 -> bf16 rounds; bf16 -> fp32
// widens. Values travel unchanged either way.
TEST(Bf16StateCheckpoint, CheckpointsResumeAcrossStateDtypes) {
  const Recipe bf16 = Bf16Recipe(), fp32 = SmallRecipe();
  const fs::path dir = FreshDir("bf16_state");

  Bf16Trainee a(bf16, 5);
  const std::string bf16_step = SaveBf16(a, bf16, dir.string(), 2);
  Bf16Trainee same(bf16, 9);
  LoadBf16(same, bf16_step);
  EXPECT_EQ(same.Bits(), a.Bits());
  EXPECT_EQ(same.Values(), a.Values());

  testing::Trainee widened(fp32, 9);
  read_checkpoint(Self(), bf16_step, widened.tensors, widened.slices.reads(),
                  widened.slices.owned());
  size_t wrong = 0, compared = 0;
  ForCheckpointedMoments(a.model.params(), a.optimizer, [&](size_t k, size_t i) {
    wrong += widened.optimizer.exp_avg(k)[i] != bf16_to_float(a.optimizer.exp_avg_bf16(k)[i]);
    wrong += widened.optimizer.exp_avg_sq(k)[i] != bf16_to_float(a.optimizer.exp_avg_sq_bf16(k)[i]);
    ++compared;
  });
  EXPECT_GT(compared, 100u);
  EXPECT_EQ(wrong, 0u) << "a fp32-state resume of a bf16-state checkpoint is not the widening";

  testing::Trainee f(fp32, 7);
  const std::string fp32_step = testing::Save(f, fp32, dir / "fp32", 4);
  Bf16Trainee rounded(bf16, 11);
  LoadBf16(rounded, fp32_step);
  wrong = 0;
  size_t inexact = 0;
  ForCheckpointedMoments(f.model.params(), f.optimizer, [&](size_t k, size_t i) {
    const float m = f.optimizer.exp_avg(k)[i];
    wrong += rounded.optimizer.exp_avg_bf16(k)[i] != float_to_bf16(m);
    wrong += rounded.optimizer.exp_avg_sq_bf16(k)[i] != float_to_bf16(f.optimizer.exp_avg_sq(k)[i]);
    inexact += bf16_to_float(float_to_bf16(m)) != m;
  });
  EXPECT_EQ(wrong, 0u) << "a bf16-state resume of a fp32-state checkpoint is not the rounding";
  EXPECT_GT(inexact, 0u) << "the test's moments are all bf16 values: nothing was rounded";
  const float* fv = f.model.params().values().data<float>();
  EXPECT_EQ(rounded.Values(), std::vector<float>(fv, fv + f.model.params().padded_numel()));
}

}  // namespace
}  // namespace tessera::trainer
