// kernels/quantized_gemm.h: the fine-grained FP8 GEMM against fp64 on the SAME codes and scales
// (its only error must be fp32 accumulation), bit for bit against the documented operation
// order, with and without promotion, the K = 4096 case where promotion matters (V3 report
// §3.3.2), and the bf16 GEMM against fp64 on bf16-rounded inputs.
#include "kernels/quantized_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"
#include "kernels/math/low_precision.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::to_float;

constexpr double kU = 0x1p-24;  // fp32 unit roundoff

// An fp8 operand [rows, k] with its tiling.
struct Operand {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  Fp8Tiling tiling;
  int64_t rows;
};

Operand quantize(const std::vector<float>& x, int64_t rows, int64_t k, Fp8Tiling tiling) {
  Operand q{std::vector<uint8_t>(rows * k),
            std::vector<float>(fp8_scale_rows(tiling, rows) * fp8_scale_cols(k)), tiling, rows};
  fp8_quantize(q.codes.data(), q.scales.data(), tiling, Trans::kNo, x.data(), k, rows, k);
  return q;
}

// The scale of `row` for K element kk, indexed here independently of the library.
double scale_of(const Operand& q, int64_t row, int64_t kk, int64_t k) {
  const int64_t scale_row = q.tiling == Fp8Tiling::k1x128 ? row : row / 128;
  return q.scales[scale_row * ((k + 127) / 128) + kk / 128];
}

std::vector<float> run(const Operand& a, const Operand& b, int64_t k, Fp8GemmOptions options) {
  std::vector<float> d(a.rows * b.rows);
  fp8_gemm(d.data(), a.codes.data(), a.scales.data(), a.tiling, b.codes.data(), b.scales.data(),
           b.tiling, a.rows, b.rows, k, options);
  return d;
}

// fp64 on the same codes and scales: each term sa·sb·a·b is exact in fp64 up to one rounding
// (2^-53), far below fp32's. `magnitude` is Σ|terms|, the scale of the accumulation error.
struct Exact {
  std::vector<double> d, magnitude;
};

Exact exact_gemm(const Operand& a, const Operand& b, int64_t k) {
  Exact e{std::vector<double>(a.rows * b.rows), std::vector<double>(a.rows * b.rows)};
  for (int64_t i = 0; i < a.rows; ++i) {
    for (int64_t j = 0; j < b.rows; ++j) {
      double sum = 0, mag = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double term = scale_of(a, i, kk, k) * scale_of(b, j, kk, k) *
                            math::e4m3_to_float(a.codes[i * k + kk]) *
                            math::e4m3_to_float(b.codes[j * k + kk]);
        sum += term;
        mag += std::abs(term);
      }
      e.d[i * b.rows + j] = sum;
      e.magnitude[i * b.rows + j] = mag;
    }
  }
  return e;
}

// max over outputs of |d - exact| / Σ|terms|.
double max_normalised_error(const std::vector<float>& d, const Exact& e) {
  double worst = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    worst = std::max(worst, std::abs(d[i] - e.d[i]) / std::max(e.magnitude[i], 1e-300));
  }
  return worst;
}

// max over outputs of |d - exact| / |exact| (the report's "relative error" of a result).
double max_relative_error(const std::vector<float>& d, const Exact& e) {
  double worst = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    worst = std::max(worst, std::abs(d[i] - e.d[i]) / std::max(std::abs(e.d[i]), 1e-300));
  }
  return worst;
}

// Promoted: every output within the fp32 accumulation bound of the fp64 value on the same
// inputs: (chunk length - 1) additions per chunk, one rounding of sa·sb, one per fma, over
// ⌈k/128⌉ chunks: |err| <= (128 + ⌈k/128⌉ + 1)·u·Σ|terms| (first order). Every tiling pair.
TEST(Fp8Gemm, PromotedErrorIsOnlyFp32Accumulation) {
  for (int64_t k : {300, 4096}) {
    const int64_t m = 37, n = 45;
    const std::vector<float> x = to_float(random_vector(m * k, 1, -4.0, 4.0));
    const std::vector<float> w = to_float(random_vector(n * k, 2, -0.05, 0.05));
    for (Fp8Tiling at : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
      for (Fp8Tiling bt : {Fp8Tiling::k128x128, Fp8Tiling::k1x128}) {
        const Operand a = quantize(x, m, k, at), b = quantize(w, n, k, bt);
        const std::vector<float> d = run(a, b, k, {});
        const Exact e = exact_gemm(a, b, k);
        const double bound = (std::min<int64_t>(k, 128) + (k + 127) / 128 + 1) * kU;
        const double err = max_normalised_error(d, e);
        std::printf("k=%lld tilings a=%d b=%d: max |err| / sum|terms| = %.3g (bound %.3g)\n",
                    static_cast<long long>(k), static_cast<int>(at), static_cast<int>(bt), err,
                    bound);
        EXPECT_LE(err, bound);
      }
    }
  }
}

// The header's definition, written out literally: promoted (fp32 partial per 128-chunk, then
// fma(sa·sb, partial, acc)) and not promoted (one accumulator, truncated after every add).
// The library must match it bit for bit: a GPU kernel claiming the same numerics can be
// compared with this exactly.
TEST(Fp8Gemm, IsExactlyTheDocumentedOperations) {
  const int64_t m = 9, n = 11, k = 520;  // 4 full chunks and a ragged one
  const Operand a = quantize(to_float(random_vector(m * k, 3, -1.0, 1.0)), m, k,
                             Fp8Tiling::k1x128);
  const Operand b = quantize(to_float(random_vector(n * k, 4, -1.0, 1.0)), n, k,
                             Fp8Tiling::k128x128);
  for (bool promote : {true, false}) {
    for (int bits : {14, 23}) {
      const std::vector<float> d = run(a, b, k, {promote, bits});
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          float acc = 0.0f;
          for (int64_t c0 = 0; c0 < k; c0 += 128) {
            const float s = static_cast<float>(scale_of(a, i, c0, k)) *
                            static_cast<float>(scale_of(b, j, c0, k));
            float partial = 0.0f;
            for (int64_t kk = c0; kk < std::min(k, c0 + 128); ++kk) {
              const float p = math::e4m3_to_float(a.codes[i * k + kk]) *
                              math::e4m3_to_float(b.codes[j * k + kk]);
              if (promote) {
                partial += p;
              } else {
                const float sum = acc + s * p;
                // Keep `bits` fraction bits, toward zero: frexp's m in [0.5, 1) has bits + 1.
                int e;
                const float frac = std::frexp(sum, &e);
                acc = std::ldexp(std::trunc(std::ldexp(frac, bits + 1)), e - bits - 1);
              }
            }
            if (promote) acc = std::fma(s, partial, acc);
          }
          ASSERT_EQ(d[i * n + j], acc) << "promote=" << promote << " bits=" << bits << " i=" << i
                                       << " j=" << j;
        }
      }
    }
  }
}

// V3 report §3.3.2: accumulating K = 4096 inside the tensor core (about 14 mantissa bits) loses
// up to ~2%; promoting every 128 elements to fp32 removes it. Against fp64 on the same rounded
// inputs: positive data (post-activation x, positive weights: every addition truncates the same
// way, the worst case) and zero-mean data.
TEST(Fp8Gemm, PromotionMattersAtK4096) {
  const int64_t m = 24, n = 24, k = 4096;
  struct Case {
    const char* name;
    double lo, hi;
  };
  for (const Case& c : {Case{"positive", 0.0, 1.0}, Case{"zero-mean", -1.0, 1.0}}) {
    const Operand a = quantize(to_float(random_vector(m * k, 5, c.lo, c.hi)), m, k,
                               Fp8Tiling::k1x128);
    const Operand b = quantize(to_float(random_vector(n * k, 6, c.lo, c.hi)), n, k,
                               Fp8Tiling::k128x128);
    const Exact e = exact_gemm(a, b, k);
    const std::vector<float> promoted = run(a, b, k, {true, 14});
    const std::vector<float> unpromoted = run(a, b, k, {false, 14});
    const double p_norm = max_normalised_error(promoted, e);
    const double u_norm = max_normalised_error(unpromoted, e);
    std::printf("K=4096 %s data: max |err| / sum|terms| promoted %.3g, not promoted %.3g\n",
                c.name, p_norm, u_norm);
    if (c.lo >= 0) {  // relative to the result (meaningless for zero-mean outputs near zero)
      std::printf("K=4096 %s data: max |err| / |exact| promoted %.3g, not promoted %.3g\n", c.name,
                  max_relative_error(promoted, e), max_relative_error(unpromoted, e));
    }
    EXPECT_LT(p_norm * 100, u_norm) << c.name;
    EXPECT_LE(p_norm, (128 + 32 + 1) * kU) << c.name;
  }
}

// The whole recipe on unquantised inputs: within e4m3's rounding of the fp64 product. Each
// operand's normal codes are within 2^-4 relative, so a term is within (1 + 2^-4)^2 - 1 < 0.13;
// subnormal codes add at most 2^-10·scale each, negligible here. Checks that scales are applied
// the right way round (a wrong one would miss by factors of 448).
TEST(Fp8Gemm, ApproximatesTheUnquantisedProduct) {
  const int64_t m = 16, n = 40, k = 384;
  const std::vector<double> xd = random_vector(m * k, 11, -2.0, 2.0);
  const std::vector<double> wd = random_vector(n * k, 12, -0.1, 0.1);
  const std::vector<float> x = to_float(xd), w = to_float(wd);
  const std::vector<float> d = run(quantize(x, m, k, Fp8Tiling::k1x128),
                                   quantize(w, n, k, Fp8Tiling::k128x128), k, {});
  double worst = 0, sq_err = 0, sq_ref = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0, mag = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        ref += double(x[i * k + kk]) * w[j * k + kk];
        mag += std::abs(double(x[i * k + kk]) * w[j * k + kk]);
      }
      const double err = std::abs(d[i * n + j] - ref);
      worst = std::max(worst, err / mag);
      sq_err += err * err;
      sq_ref += ref * ref;
    }
  }
  std::printf("fp8 vs unquantised fp64: max |err| / sum|terms| %.3g, relative Frobenius %.3g\n",
              worst, std::sqrt(sq_err / sq_ref));
  EXPECT_LT(worst, 0.13);
}

TEST(Fp8Gemm, TruncateMantissa) {
  EXPECT_EQ(truncate_mantissa(1.0f + 0x1p-14f + 0x1p-15f, 14), 1.0f + 0x1p-14f);
  EXPECT_EQ(truncate_mantissa(-(1.0f + 0x1p-14f + 0x1p-15f), 14), -(1.0f + 0x1p-14f));  // to 0
  EXPECT_EQ(truncate_mantissa(1.0f + 0x1p-23f, 23), 1.0f + 0x1p-23f);
  EXPECT_EQ(truncate_mantissa(3.0f, 0), 2.0f);
}

TEST(Fp8Gemm, RejectsBadArguments) {
  std::vector<uint8_t> codes(256, 0x38);
  std::vector<float> scales(4, 1.0f), d(4);
  EXPECT_THROW(fp8_gemm(d.data(), codes.data(), scales.data(), Fp8Tiling::k1x128, codes.data(),
                        scales.data(), Fp8Tiling::k1x128, -1, 1, 128),
               std::invalid_argument);
  EXPECT_THROW(fp8_gemm(d.data(), codes.data(), scales.data(), Fp8Tiling::k1x128, codes.data(),
                        scales.data(), Fp8Tiling::k1x128, 1, 1, 128, {false, 24}),
               std::invalid_argument);
  fp8_gemm(d.data(), codes.data(), scales.data(), Fp8Tiling::k1x128, codes.data(), scales.data(),
           Fp8Tiling::k1x128, 1, 1, 128);
  EXPECT_EQ(d[0], 128.0f);  // 128 products of 1.0 (code 0x38), scales 1
}

// bf16 GEMM: fp64 on the bf16-rounded inputs, within fp32 accumulation error (products of two
// bf16 values are exact in fp32, so only the k - 1 additions round, in whatever order BLAS
// uses): |err| <= (k + 1)·u·Σ|a·b|. Row strides wider than the rows.
TEST(Bf16Gemm, IsFp32AccumulationOfRoundedInputs) {
  const int64_t m = 33, n = 47, k = 250, lda = 260, ldb = 255;
  const std::vector<float> a = to_float(random_vector(m * lda, 13, -3.0, 3.0));
  const std::vector<float> b = to_float(random_vector(n * ldb, 14, -3.0, 3.0));
  std::vector<float> d(m * n);
  bf16_gemm(d.data(), a.data(), lda, b.data(), ldb, m, n, k);
  double worst = 0;
  bool rounding_mattered = false;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0, mag = 0, unrounded = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double p = double(math::round_to_bf16(a[i * lda + kk])) *
                         math::round_to_bf16(b[j * ldb + kk]);
        ref += p;
        mag += std::abs(p);
        unrounded += double(a[i * lda + kk]) * b[j * ldb + kk];
      }
      const double err = std::abs(d[i * n + j] - ref) / mag;
      worst = std::max(worst, err);
      rounding_mattered |= std::abs(unrounded - ref) > (k + 1) * kU * mag;
    }
  }
  std::printf("bf16 gemm vs fp64 on rounded inputs: max |err| / sum|terms| = %.3g (bound %.3g)\n",
              worst, (k + 1) * kU);
  EXPECT_LE(worst, (k + 1) * kU);
  EXPECT_TRUE(rounding_mattered);  // the inputs were really rounded
}

}  // namespace
}  // namespace tessera::kernels
