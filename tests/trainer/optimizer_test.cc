#include "trainer/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tessera::trainer {
namespace {

ParamTable TwoParams() {
  ParamTable t;
  t.add({"w", {2, 2}});                                         // decayed
  t.add({"norm", {2}, ParamInit::kOnes, /*weight_decay=*/false});
  t.add({"bias", {2}, ParamInit::kZeros, false, /*trainable=*/false});
  t.finalize();
  return t;
}

TEST(Optimizer, GradNormCountsTrainableOnlyAndClipScales) {
  ParamTable t = TwoParams();
  float* g = t.grads().data<float>();
  for (int i = 0; i < 8; ++i) g[i] = 1.0f;  // w: 4 ones, norm: 2 ones, bias: 2 ones (ignored)
  EXPECT_NEAR(grad_norm(t), std::sqrt(6.0), 1e-12);
  EXPECT_DOUBLE_EQ(clip_scale(4.0, 1.0), 0.25);
  EXPECT_DOUBLE_EQ(clip_scale(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(clip_scale(100.0, 0.0), 1.0);  // clipping off
}

TEST(Optimizer, AdamWFirstStepDecaysOnlyDecayedParamsAndSkipsFrozen) {
  ParamTable t = TwoParams();
  t.init(1, 0.5);
  float* p = t.values().data<float>();
  const float w0 = p[0], n0 = p[4], b0 = p[6];
  float* g = t.grads().data<float>();
  for (int i = 0; i < 8; ++i) g[i] = 2.0f;
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  oc.eps = 1e-8;
  AdamW opt(oc);
  const double lr = 0.01, scale = 0.5;  // clipped gradient = 1.0
  opt.Step(t, lr, scale);
  // First bias-corrected Adam step moves by lr * g/|g| = lr (g > 0).
  EXPECT_NEAR(p[0], w0 * (1 - lr * 0.1) - lr, 1e-6);
  EXPECT_NEAR(p[4], n0 - lr, 1e-6);
  EXPECT_EQ(p[6], b0);
  EXPECT_EQ(opt.steps_taken(), 1);
  // The moments saw the clipped gradient: m = (1 - beta1) * 1.0
  EXPECT_NEAR(t.exp_avg().data<float>()[0], 1 - oc.beta1, 1e-7);
  EXPECT_NEAR(t.exp_avg_sq().data<float>()[0], 1 - oc.beta2, 1e-7);
}

}  // namespace
}  // namespace tessera::trainer
