#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

constexpr int64_t B = 2, T = 5, H = 2, hd = 6, half = hd / 2;
constexpr int64_t ld = H * hd + 5;  // rows padded, as inside a fused q|k|v buffer
constexpr double kTheta = 10000.0;

std::vector<double> table(bool cosine) {
  std::vector<double> c(T * half), s(T * half);
  rope_table(c.data(), s.data(), T, hd, kTheta);
  return cosine ? c : s;
}

TEST(Rope, TableMatchesFormula) {
  const auto c = table(true), s = table(false);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = t / std::pow(kTheta, double(2 * i) / hd);
      EXPECT_NEAR(c[t * half + i], std::cos(angle), 1e-15);
      EXPECT_NEAR(s[t * half + i], std::sin(angle), 1e-15);
    }
  }
}

TEST(Rope, ForwardRotatesAdjacentPairsAsComplexNumbers) {
  const auto c = table(true), s = table(false);
  const auto x0 = random_vector(B * T * ld, 1);
  auto x = x0;
  rope_forward(x.data(), ld, c.data(), s.data(), B, T, H, hd);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const double* in = x0.data() + (b * T + t) * ld;
      const double* out = x.data() + (b * T + t) * ld;
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t i = 0; i < half; ++i) {
          const double angle = t / std::pow(kTheta, double(2 * i) / hd);
          const std::complex<double> z =
              std::complex<double>(in[h * hd + 2 * i], in[h * hd + 2 * i + 1]) *
              std::polar(1.0, angle);
          EXPECT_NEAR(out[h * hd + 2 * i], z.real(), 1e-14);
          EXPECT_NEAR(out[h * hd + 2 * i + 1], z.imag(), 1e-14);
        }
      }
      for (int64_t j = H * hd; j < ld; ++j) EXPECT_EQ(out[j], in[j]) << "padding changed";
    }
  }
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const auto c = table(true), s = table(false);
  auto x = random_vector(B * T * ld, 2);
  const auto valid = testing::strided_indices(B * T, H * hd, ld);
  auto dy = random_vector(B * T * ld, 3);
  auto loss = [&] {
    auto y = x;
    rope_forward(y.data(), ld, c.data(), s.data(), B, T, H, hd);
    double l = 0;
    for (int64_t i : valid) l += dy[i] * y[i];
    return l;
  };
  const auto g = testing::numeric_grad(x, loss, valid);
  auto dx = dy;
  rope_backward(dx.data(), ld, c.data(), s.data(), B, T, H, hd);
  EXPECT_LE(rel_error(dx, g, valid), testing::kFdTolerance);
  for (int64_t i : testing::other_indices(B * T * ld, valid)) EXPECT_EQ(dx[i], dy[i]);
}

TEST(Rope, Fp32MatchesFp64) {
  std::vector<float> cf(T * half), sf(T * half);
  rope_table(cf.data(), sf.data(), T, hd, kTheta);
  const auto c = table(true), s = table(false);
  const auto x = testing::float_exact(random_vector(B * T * ld, 4));
  auto xd = x;
  auto xf = testing::to_float(x);
  rope_forward(xd.data(), ld, c.data(), s.data(), B, T, H, hd);
  rope_forward(xf.data(), ld, cf.data(), sf.data(), B, T, H, hd);
  EXPECT_LE(rel_error(xf, xd), testing::kF32Tolerance);
  rope_backward(xd.data(), ld, c.data(), s.data(), B, T, H, hd);
  rope_backward(xf.data(), ld, cf.data(), sf.data(), B, T, H, hd);
  EXPECT_LE(rel_error(xf, xd), testing::kF32Tolerance);
  EXPECT_LE(rel_error(xd, x), 1e-14);  // backward undoes forward
}

TEST(Rope, RejectsOddHeadDim) {
  std::vector<double> c(16), s(16);
  EXPECT_THROW(rope_table(c.data(), s.data(), 2, 5, kTheta), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
