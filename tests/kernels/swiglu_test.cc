#include "kernels/swiglu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

// a and b are the two halves of a fused (N, 2F + pad) projection.
constexpr int64_t N = 4, F = 6, ld = 2 * F + 3;

TEST(SwiGlu, ForwardMatchesFormula) {
  const auto ab = random_vector(N * ld, 1, -6.0, 6.0);
  std::vector<double> h(N * F);
  swiglu_forward(h.data(), ab.data(), ab.data() + F, ld, N, F);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t f = 0; f < F; ++f) {
      const double a = ab[n * ld + f], b = ab[n * ld + F + f];
      EXPECT_NEAR(h[n * F + f], a / (1.0 + std::exp(-a)) * b, 1e-14);
    }
  }
}

TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  auto ab = random_vector(N * ld, 2, -6.0, 6.0);
  const auto dh = random_vector(N * F, 3);
  auto loss = [&] {
    std::vector<double> h(N * F);
    swiglu_forward(h.data(), ab.data(), ab.data() + F, ld, N, F);
    return testing::dot(dh, h);
  };
  const auto valid = testing::strided_indices(N, 2 * F, ld);
  const auto g = testing::numeric_grad(ab, loss, valid);
  constexpr double kSentinel = 31.0;
  std::vector<double> dab(N * ld, kSentinel);
  swiglu_backward(dab.data(), dab.data() + F, dh.data(), ab.data(), ab.data() + F, ld, N, F);
  EXPECT_LE(rel_error(dab, g, valid), testing::kFdTolerance);
  for (int64_t i : testing::other_indices(N * ld, valid)) EXPECT_EQ(dab[i], kSentinel);
}

TEST(SwiGlu, Fp32MatchesFp64) {
  const auto ab = testing::float_exact(random_vector(N * ld, 4, -20.0, 20.0));
  const auto dh = testing::float_exact(random_vector(N * F, 5));
  const auto abf = testing::to_float(ab);
  const auto dhf = testing::to_float(dh);
  std::vector<double> h(N * F), dab(N * ld, 0.0);
  std::vector<float> hf(N * F), dabf(N * ld, 0.0f);
  swiglu_forward(h.data(), ab.data(), ab.data() + F, ld, N, F);
  swiglu_forward(hf.data(), abf.data(), abf.data() + F, ld, N, F);
  swiglu_backward(dab.data(), dab.data() + F, dh.data(), ab.data(), ab.data() + F, ld, N, F);
  swiglu_backward(dabf.data(), dabf.data() + F, dhf.data(), abf.data(), abf.data() + F, ld, N, F);
  EXPECT_LE(rel_error(hf, h), testing::kF32Tolerance);
  EXPECT_LE(rel_error(dabf, dab), testing::kF32Tolerance);
}

}  // namespace
}  // namespace tessera::kernels
