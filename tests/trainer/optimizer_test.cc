#include "trainer/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu_backend.h"

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

}  // namespace
}  // namespace tessera::trainer
