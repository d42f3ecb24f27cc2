#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

constexpr int64_t N = 4, V = 11;
const std::vector<int32_t> kTargets = {0, 10, 3, 3};

TEST(CrossEntropy, ForwardMatchesNaiveLogSumExp) {
  const auto logits = random_vector(N * V, 1, -3.0, 3.0);
  std::vector<double> loss(N), lse(N);
  cross_entropy_forward(loss.data(), lse.data(), logits.data(), kTargets.data(), N, V);
  for (int64_t n = 0; n < N; ++n) {
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(logits[n * V + v]);
    EXPECT_NEAR(lse[n], std::log(z), 1e-14);
    EXPECT_NEAR(loss[n], std::log(z) - logits[n * V + kTargets[n]], 1e-14);
  }
}

// Shifting a row by a constant leaves the loss unchanged and must not overflow in fp32.
TEST(CrossEntropy, StableForLargeLogits) {
  const auto logits = testing::float_exact(random_vector(N * V, 2, -3.0, 3.0));
  std::vector<float> shifted(N * V);
  for (int64_t i = 0; i < N * V; ++i) shifted[i] = static_cast<float>(logits[i]) + 1000.0f;
  std::vector<double> loss(N), lse(N);
  std::vector<float> lossf(N), lsef(N);
  cross_entropy_forward(loss.data(), lse.data(), logits.data(), kTargets.data(), N, V);
  cross_entropy_forward(lossf.data(), lsef.data(), shifted.data(), kTargets.data(), N, V);
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_TRUE(std::isfinite(lossf[n]));
    EXPECT_NEAR(lossf[n], loss[n], 1e-4);  // 1000 + x in fp32 loses ~6e-5 of x
  }
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  auto logits = random_vector(N * V, 3, -3.0, 3.0);
  const auto w = random_vector(N, 4);  // weights per row, so rows are told apart
  const double scale = 0.37;
  auto loss = [&] {
    std::vector<double> l(N), lse(N);
    cross_entropy_forward(l.data(), lse.data(), logits.data(), kTargets.data(), N, V);
    double s = 0;
    for (int64_t n = 0; n < N; ++n) s += w[n] * l[n];
    return scale * s;
  };
  const auto g = testing::numeric_grad(logits, loss);
  std::vector<double> l(N), lse(N), d(N * V);
  cross_entropy_forward(l.data(), lse.data(), logits.data(), kTargets.data(), N, V);
  // Per-row weights: run each row alone with scale * w[n].
  for (int64_t n = 0; n < N; ++n) {
    cross_entropy_backward(d.data() + n * V, logits.data() + n * V, lse.data() + n,
                           kTargets.data() + n, 1, V, scale * w[n]);
  }
  EXPECT_LE(rel_error(d, g), testing::kFdTolerance);

  // dlogits may alias logits.
  auto in_place = logits;
  for (int64_t n = 0; n < N; ++n) {
    cross_entropy_backward(in_place.data() + n * V, in_place.data() + n * V, lse.data() + n,
                           kTargets.data() + n, 1, V, scale * w[n]);
  }
  EXPECT_EQ(in_place, d);
}

TEST(CrossEntropy, Fp32MatchesFp64) {
  const auto logits = testing::float_exact(random_vector(N * V, 5, -8.0, 8.0));
  const auto lf = testing::to_float(logits);
  std::vector<double> loss(N), lse(N), d(N * V);
  std::vector<float> lossf(N), lsef(N), df(N * V);
  cross_entropy_forward(loss.data(), lse.data(), logits.data(), kTargets.data(), N, V);
  cross_entropy_forward(lossf.data(), lsef.data(), lf.data(), kTargets.data(), N, V);
  cross_entropy_backward(d.data(), logits.data(), lse.data(), kTargets.data(), N, V, 0.25);
  cross_entropy_backward(df.data(), lf.data(), lsef.data(), kTargets.data(), N, V, 0.25f);
  EXPECT_LE(rel_error(lossf, loss), testing::kF32Tolerance);
  EXPECT_LE(rel_error(df, d), testing::kF32Tolerance);
}

TEST(CrossEntropy, RejectsTargetsOutsideVocabulary) {
  std::vector<float> logits(2 * V), loss(2), lse(2);
  std::vector<int32_t> bad = {0, static_cast<int32_t>(V)};
  EXPECT_THROW(cross_entropy_forward(loss.data(), lse.data(), logits.data(), bad.data(), 2, V),
               std::out_of_range);
}

}  // namespace
}  // namespace tessera::kernels
