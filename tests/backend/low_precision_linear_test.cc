// The CPU backend's bf16 and fp8 linear maps against the reference GEMMs of
// kernels/quantized_gemm.h on explicitly quantised operands, for each of the three GEMMs with
// V3's tilings: forward x (1x128) by W (128x128), dgrad dy (1x128) by W^T (128x128), wgrad
// dy^T by x^T (both 1x128 along the tokens). Ragged shapes (K not a multiple of 128). The
// backend computes the same rounded values with one fp32 GEMM; the reference promotes every 128
// of K: they agree to fp32 accumulation error.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/cpu_backend.h"
#include "kernels/fp8_quantize.h"
#include "kernels/quantized_gemm.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

std::vector<float> random_floats(int64_t n, uint64_t seed, double scale) {
  std::vector<double> d = testing::random_vector(n, seed, -scale, scale);
  return std::vector<float>(d.begin(), d.end());
}

struct Fp8 {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  Fp8Tiling tiling;
};
// op(x) [rows, cols] quantised (x stored [rows, cols] for kNo, [cols, rows] for kYes).
Fp8 quantise(const std::vector<float>& x, Fp8Tiling tiling, Trans trans, int64_t rows,
             int64_t cols) {
  Fp8 q{std::vector<uint8_t>(rows * cols),
        std::vector<float>(fp8_scale_rows(tiling, rows) * fp8_scale_cols(cols)), tiling};
  fp8_quantize(q.codes.data(), q.scales.data(), tiling, trans, x.data(),
               trans == Trans::kNo ? cols : rows, rows, cols);
  return q;
}
std::vector<float> fp8_reference(const Fp8& a, const Fp8& b, int64_t m, int64_t n, int64_t k) {
  std::vector<float> d(m * n);
  fp8_gemm(d.data(), a.codes.data(), a.scales.data(), a.tiling, b.codes.data(), b.scales.data(),
           b.tiling, m, n, k);
  return d;
}
// op(x) packed, for the bf16 reference.
std::vector<float> packed(const std::vector<float>& x, Trans trans, int64_t rows, int64_t cols) {
  std::vector<float> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = trans == Trans::kNo ? x[r * cols + c] : x[c * rows + r];
    }
  }
  return out;
}
std::vector<float> bf16_reference(const std::vector<float>& a, const std::vector<float>& b,
                                  int64_t m, int64_t n, int64_t k) {
  std::vector<float> d(m * n);
  bf16_gemm(d.data(), a.data(), k, b.data(), k, m, n, k);
  return d;
}

constexpr int64_t N = 200, I = 300, O = 130;  // tokens, in, out

class LowPrecisionLinear : public ::testing::Test {
 protected:
  CpuBackend cpu;
  BackendOps<float>& ops = cpu.ops<float>();
  std::vector<float> x = random_floats(N * I, 1, 2.0), W = random_floats(O * I, 2, 0.1),
                     dy = random_floats(N * O, 3, 0.01);
};

TEST_F(LowPrecisionLinear, Fp8UsesV3sTilingsInEveryGemm) {
  std::vector<float> y(N * O), dx(N * I), dW(O * I, 0.0f);
  ops.linear_forward(y.data(), O, x.data(), I, W.data(), N, I, O, {.precision = Precision::kFP8});
  ops.linear_backward_input(dx.data(), I, dy.data(), O, W.data(), N, I, O,
                            {.precision = Precision::kFP8});
  ops.linear_backward_weight(dW.data(), dy.data(), O, x.data(), I, N, I, O, Precision::kFP8);
  const auto want_y = fp8_reference(quantise(x, Fp8Tiling::k1x128, Trans::kNo, N, I),
                                    quantise(W, Fp8Tiling::k128x128, Trans::kNo, O, I), N, O, I);
  const auto want_dx = fp8_reference(quantise(dy, Fp8Tiling::k1x128, Trans::kNo, N, O),
                                     quantise(W, Fp8Tiling::k128x128, Trans::kYes, I, O), N, I, O);
  const auto want_dW = fp8_reference(quantise(dy, Fp8Tiling::k1x128, Trans::kYes, O, N),
                                     quantise(x, Fp8Tiling::k1x128, Trans::kYes, I, N), O, I, N);
  EXPECT_LE(testing::rel_error(y, want_y), 1e-6);
  EXPECT_LE(testing::rel_error(dx, want_dx), 1e-6);
  EXPECT_LE(testing::rel_error(dW, want_dW), 1e-6);
  // And fp8 is not fp32: the rounding is there (e4m3 keeps 3 mantissa bits).
  std::vector<float> y32(N * O);
  ops.linear_forward(y32.data(), O, x.data(), I, W.data(), N, I, O);
  EXPECT_GT(testing::rel_error(y, y32), 1e-3);
  EXPECT_LT(testing::rel_error(y, y32), 0.1);
}

TEST_F(LowPrecisionLinear, Bf16RoundsEveryGemmInput) {
  std::vector<float> y(N * O), dx(N * I), dW(O * I, 0.0f);
  ops.linear_forward(y.data(), O, x.data(), I, W.data(), N, I, O, {.precision = Precision::kBF16});
  ops.linear_backward_input(dx.data(), I, dy.data(), O, W.data(), N, I, O,
                            {.precision = Precision::kBF16});
  ops.linear_backward_weight(dW.data(), dy.data(), O, x.data(), I, N, I, O, Precision::kBF16);
  EXPECT_LE(testing::rel_error(y, bf16_reference(x, W, N, O, I)), 1e-6);
  EXPECT_LE(testing::rel_error(dx, bf16_reference(dy, packed(W, Trans::kYes, I, O), N, I, O)),
            1e-6);
  EXPECT_LE(testing::rel_error(dW, bf16_reference(packed(dy, Trans::kYes, O, N),
                                                  packed(x, Trans::kYes, I, N), O, I, N)),
            1e-6);
}

TEST_F(LowPrecisionLinear, AccumulateAndStridesHoldInLowPrecision) {
  // y (stride O + 3) = 1 + x W^T: accumulate keeps what was there, padding columns untouched.
  const int64_t ld = O + 3;
  std::vector<float> y(N * ld, 1.0f), plain(N * O);
  ops.linear_forward(y.data(), ld, x.data(), I, W.data(), N, I, O,
                     {.accumulate = true, .precision = Precision::kFP8});
  ops.linear_forward(plain.data(), O, x.data(), I, W.data(), N, I, O,
                     {.precision = Precision::kFP8});
  for (int64_t n = 0; n < N; ++n) {
    // The library may add C inside its K loop rather than after it (oneDNN's AVX2 sgemm
    // does): equal up to the rounding of a few sums of magnitude 1 + |plain|.
    for (int64_t o = 0; o < O; ++o) {
      const float want = 1.0f + plain[n * O + o];
      EXPECT_NEAR(y[n * ld + o], want, 4 * FLT_EPSILON * (1.0f + std::fabs(plain[n * O + o])));
    }
    for (int64_t o = O; o < ld; ++o) EXPECT_EQ(y[n * ld + o], 1.0f);
  }
}

TEST_F(LowPrecisionLinear, DoubleOpsRefuseLowPrecision) {
  std::vector<double> xd(N * I), Wd(O * I), yd(N * O);
  EXPECT_THROW(cpu.ops<double>().linear_forward(yd.data(), O, xd.data(), I, Wd.data(), N, I, O,
                                                {.precision = Precision::kBF16}),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
