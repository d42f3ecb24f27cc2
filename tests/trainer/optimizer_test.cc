#include "trainer/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "kernels/math/low_precision.h"
#include "tests/trainer/staged_cpu_backend.h"

namespace tessera::trainer {
namespace {

ParamTable TwoParams(kernels::Backend& backend) {
  ParamTable t;
  t.add({"w", {2, 2}});                                         // decayed
  t.add({"norm", {2}, ParamInit::kOnes, /*weight_decay=*/false});
  t.add({"bias", {2}, ParamInit::kZeros, false, /*trainable=*/false});
  t.finalize(backend);
  return t;
}

TEST(Optimizer, GradNormCountsTrainableOnlyAndClipScales) {
  kernels::CpuBackend cpu;
  ParamTable t = TwoParams(cpu);
  float* g = t.grads().data<float>();
  for (int i = 0; i < 8; ++i) g[i] = 1.0f;  // w: 4 ones, norm: 2 ones, bias: 2 ones (ignored)
  EXPECT_NEAR(grad_norm(t), std::sqrt(6.0), 1e-12);
  EXPECT_DOUBLE_EQ(clip_scale(4.0, 1.0), 0.25);
  EXPECT_DOUBLE_EQ(clip_scale(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(clip_scale(100.0, 0.0), 1.0);  // clipping off
}

TEST(Optimizer, AdamWFirstStepDecaysOnlyDecayedParamsAndSkipsFrozen) {
  kernels::CpuBackend cpu;
  ParamTable t = TwoParams(cpu);
  t.init(1, 0.5);
  float* p = t.values().data<float>();
  const float w0 = p[0], n0 = p[4], b0 = p[6];
  float* g = t.grads().data<float>();
  for (int i = 0; i < 8; ++i) g[i] = 2.0f;
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  oc.eps = 1e-8;
  AdamW opt(oc, t);
  const double lr = 0.01, scale = 0.5;  // clipped gradient = 1.0
  opt.Step(t, lr, scale);
  // First bias-corrected Adam step moves by lr * g/|g| = lr (g > 0).
  EXPECT_NEAR(p[0], w0 * (1 - lr * 0.1) - lr, 1e-6);
  EXPECT_NEAR(p[4], n0 - lr, 1e-6);
  EXPECT_EQ(p[6], b0);
  EXPECT_EQ(opt.steps_taken(), 1);
  // The moments saw the clipped gradient: m = (1 - beta1) * 1.0
  EXPECT_NEAR(opt.exp_avg(0)[0], 1 - oc.beta1, 1e-7);
  EXPECT_NEAR(opt.exp_avg_sq(0)[0], 1 - oc.beta2, 1e-7);
}

// ZeRO-1 shards cut through parameters: updating [0, 3) and [3, 8) with two optimizers (each
// with its own moments) must equal one optimizer over the whole table, decay flags per element
// included, and nothing outside an optimizer's ranges may change.
TEST(Optimizer, ShardedRangesEqualOneWholeUpdate) {
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  kernels::CpuBackend cpu;
  ParamTable whole = TwoParams(cpu), sharded = TwoParams(cpu);
  whole.init(2, 0.5);
  sharded.init(2, 0.5);
  AdamW one(oc, whole);
  AdamW first(oc, {{0, 3}}, cpu), second(oc, {{3, 8}}, cpu);
  for (int step = 1; step <= 3; ++step) {
    for (ParamTable* t : {&whole, &sharded}) {
      float* g = t->grads().data<float>();
      for (int i = 0; i < 8; ++i) g[i] = 0.3f * i - step;
    }
    one.Step(whole, 0.01, 0.7);
    const std::vector<float> before(sharded.values().data<float>(),
                                    sharded.values().data<float>() + 8);
    first.Step(sharded, 0.01, 0.7);
    for (int i = 3; i < 8; ++i) ASSERT_EQ(sharded.values().data<float>()[i], before[i]);
    second.Step(sharded, 0.01, 0.7);
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(sharded.values().data<float>()[i], whole.values().data<float>()[i]) << i;
  }
  EXPECT_EQ(first.exp_avg(0).size(), 3u);
  EXPECT_EQ(second.exp_avg(0)[0], one.exp_avg(0)[3]);
  // Grad norm over disjoint ranges adds up to the whole table's.
  const FlatRange parts[] = {{0, 3}, {3, 8}};
  EXPECT_NEAR(grad_sum_squares(whole, parts), grad_norm(whole) * grad_norm(whole), 1e-9);
}

// A table whose decayed matrix spans many of the update's chunks (and more than 2^18 elements),
// an undecayed vector and a frozen one.
ParamTable ChunkedParams(kernels::Backend& backend) {
  ParamTable t;
  t.add({"w", {600, 500}});  // 300000 elements
  t.add({"norm", {37}, ParamInit::kOnes, /*weight_decay=*/false});
  t.add({"bias", {5}, ParamInit::kZeros, false, /*trainable=*/false});
  t.finalize(backend);
  return t;
}

void FillGrads(ParamTable& t, int step) {
  float* g = t.grads().data<float>();
  for (int64_t i = 0; i < t.padded_numel(); ++i) {
    g[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + step) * (1 + i % 7));
  }
}

float RoundedToBf16(float x) {
  return kernels::math::bf16_to_float(kernels::math::float_to_bf16(x));
}

// optimizer.state_dtype bf16: the step computes in fp32 from the widened moments and stores them
// rounded, so it equals an fp32-state step whose moments are rounded to bf16 after every update,
// bit for bit; and it is not the fp32-state step (the moments really are rounded).
TEST(Optimizer, Bf16StateEqualsFp32StepWithMomentsRoundedAfterEachUpdate) {
  OptimizerConfig fp32;
  fp32.weight_decay = 0.1;
  OptimizerConfig bf16 = fp32;
  bf16.state_dtype = "bf16";
  kernels::CpuBackend cpu;
  ParamTable ref = ChunkedParams(cpu), got = ChunkedParams(cpu), plain = ChunkedParams(cpu);
  for (ParamTable* t : {&ref, &got, &plain}) t->init(4, 0.5);
  AdamW ref_opt(fp32, ref), got_opt(bf16, got), plain_opt(fp32, plain);
  ASSERT_EQ(got_opt.state_dtype(), StateDtype::kBF16);
  ASSERT_EQ(ref_opt.state_dtype(), StateDtype::kF32);
  for (int step = 1; step <= 4; ++step) {
    for (ParamTable* t : {&ref, &got, &plain}) FillGrads(*t, step);
    ref_opt.Step(ref, 0.01, 0.8);
    for (size_t k = 0; k < ref_opt.owned().size(); ++k) {
      for (float* m : {ref_opt.exp_avg(k).data(), ref_opt.exp_avg_sq(k).data()}) {
        for (size_t i = 0; i < ref_opt.exp_avg(k).size(); ++i) m[i] = RoundedToBf16(m[i]);
      }
    }
    got_opt.Step(got, 0.01, 0.8);
    plain_opt.Step(plain, 0.01, 0.8);
  }
  const float* want = ref.values().data<float>();
  const float* have = got.values().data<float>();
  const float* fp32_state = plain.values().data<float>();
  int64_t wrong = 0, unlike_fp32_state = 0;
  for (int64_t i = 0; i < got.padded_numel(); ++i) {
    wrong += std::memcmp(&want[i], &have[i], sizeof(float)) != 0;
    unlike_fp32_state += have[i] != fp32_state[i];
  }
  EXPECT_EQ(wrong, 0) << "parameters unlike the rounded-moments reference";
  EXPECT_GT(unlike_fp32_state, got.padded_numel() / 10) << "bf16 state changed nothing";
  int64_t wrong_moments = 0, rounded_moments = 0;
  for (size_t k = 0; k < got_opt.owned().size(); ++k) {
    ASSERT_EQ(got_opt.exp_avg_bf16(k).size_bytes() * 2, ref_opt.exp_avg(k).size_bytes());
    for (size_t i = 0; i < got_opt.exp_avg_bf16(k).size(); ++i) {
      const float m = kernels::math::bf16_to_float(got_opt.exp_avg_bf16(k)[i]);
      const float v = kernels::math::bf16_to_float(got_opt.exp_avg_sq_bf16(k)[i]);
      wrong_moments += m != ref_opt.exp_avg(k)[i] || v != ref_opt.exp_avg_sq(k)[i];
      rounded_moments += m != plain_opt.exp_avg(k)[i];
    }
  }
  EXPECT_EQ(wrong_moments, 0);
  EXPECT_GT(rounded_moments, 0);
  EXPECT_THROW(got_opt.exp_avg(0), std::logic_error);      // no fp32 view of bf16 moments
  EXPECT_THROW(ref_opt.exp_avg_bf16(0), std::logic_error);
}

TEST(Optimizer, Bf16StateNamesTheKeyWhereItCannotRun) {
  OptimizerConfig bf16;
  bf16.state_dtype = "bf16";
  testing::StagedCpuBackend device(/*bf16_moments=*/false);  // no bf16 AdamW op
  try {
    AdamW opt(bf16, {{0, 8}}, device);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.state_dtype"), std::string::npos) << e.what();
  }
  OptimizerConfig bad;
  bad.state_dtype = "fp16";
  kernels::CpuBackend cpu;
  EXPECT_THROW(AdamW(bad, {{0, 8}}, cpu), std::invalid_argument);
  EXPECT_EQ(state_dtype_bytes(StateDtype::kBF16), 2);
  EXPECT_EQ(state_dtype_bytes(StateDtype::kF32), 4);
}

}  // namespace
}  // namespace tessera::trainer
