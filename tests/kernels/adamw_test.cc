#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

// Reference values from torch.optim.AdamW (PyTorch 1.13, float64 tensors), two steps with
// lr=0.01, betas=(0.9, 0.95), eps=1e-8:
//   p0 = [0.5, -1.25, 2.0, 0.0, 3e-3]
//   g1 = [0.1, -0.2, 0.3, -0.4, 0.0],  g2 = [-0.05, 0.15, 0.0, 0.25, 1e-6]
const std::vector<double> kP0 = {0.5, -1.25, 2.0, 0.0, 3e-3};
const std::vector<double> kG1 = {0.1, -0.2, 0.3, -0.4, 0.0};
const std::vector<double> kG2 = {-0.05, 0.15, 0.0, 0.25, 1e-6};
const std::vector<double> kTorchPDecay = {0.4863268068602668, -1.2366148393544494,
                                          1.979225523188992, 0.011735591692542324,
                                          -0.0042543788785552325};  // weight_decay=0.1
const std::vector<double> kTorchPNoDecay = {0.4873163068612668, -1.2391035893549494,
                                            1.9832135231893253, 0.011745591692292324,
                                            -0.004248381878555233};  // weight_decay=0
const std::vector<double> kTorchM = {0.004, -0.0030000000000000027, 0.026999999999999993,
                                     -0.011000000000000003, 9.999999999999997e-08};
const std::vector<double> kTorchV = {0.0006000000000000005, 0.0030250000000000025,
                                     0.004275000000000004, 0.010725000000000009,
                                     5.000000000000004e-14};

template <typename T>
void two_steps(std::vector<T>& p, std::vector<T>& m, std::vector<T>& v, bool decay,
               T grad_scale, T grad_factor) {
  const int64_t n = static_cast<int64_t>(p.size());
  m.assign(n, T(0));
  v.assign(n, T(0));
  AdamWStep hp;
  hp.lr = 0.01;
  hp.beta1 = 0.9;
  hp.beta2 = 0.95;
  hp.eps = 1e-8;
  hp.weight_decay = 0.1;
  int64_t step = 0;
  for (const auto* g : {&kG1, &kG2}) {
    std::vector<T> grad(n);
    for (int64_t i = 0; i < n; ++i) grad[i] = static_cast<T>((*g)[i] * grad_factor);
    hp.step = ++step;
    adamw_update(p.data(), grad.data(), m.data(), v.data(), n, hp, decay, grad_scale);
  }
}

TEST(AdamW, MatchesTorchTwoSteps) {
  for (bool decay : {true, false}) {
    std::vector<double> p = kP0, m, v;
    two_steps<double>(p, m, v, decay, 1.0, 1.0);
    const auto& ref = decay ? kTorchPDecay : kTorchPNoDecay;
    for (size_t i = 0; i < p.size(); ++i) {
      // A few ulps: torch's vectorised kernels may fuse multiply-adds.
      EXPECT_NEAR(p[i], ref[i], 1e-14 * std::abs(ref[i])) << "decay=" << decay << " i=" << i;
      EXPECT_NEAR(m[i], kTorchM[i], 1e-14 * std::abs(kTorchM[i]));
      EXPECT_NEAR(v[i], kTorchV[i], 1e-14 * std::abs(kTorchV[i]));
    }
  }
}

// grad_scale s applied to grad g/s must equal the unscaled run.
TEST(AdamW, GradScaleScalesGradients) {
  std::vector<double> p = kP0, m, v;
  two_steps<double>(p, m, v, true, 0.25, 4.0);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_NEAR(p[i], kTorchPDecay[i], 1e-14 * std::abs(kTorchPDecay[i]));
  }
}

TEST(AdamW, Fp32MatchesTorch) {
  std::vector<float> p(kP0.begin(), kP0.end()), m, v;
  two_steps<float>(p, m, v, true, 1.0f, 1.0f);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], kTorchPDecay[i], 1e-6);
}

}  // namespace
}  // namespace tessera::kernels
