// The CPU kernels' vectorisable float math (kernels/cpu_simd.h) and the thread-count
// independence of the float kernels that spread work over threads (attention over (batch, head)
// pairs, the CPU backend's grouped GEMMs over experts: tests/backend/profiling_backend_test.cc).
#include "kernels/cpu_simd.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/math/low_precision.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

TEST(CpuSimd, ExpWithinOneUlpOfTheExactExponential) {
  double worst = 0;
  for (double x = -87.0; x < 88.0; x += 0.00173) {
    const float xf = static_cast<float>(x);
    const double exact = std::exp(static_cast<double>(xf));
    const float got = cpu::exp_f32(xf);
    const float ref = static_cast<float>(exact);
    const double ulp = std::nextafter(ref, std::numeric_limits<float>::infinity()) - ref;
    worst = std::max(worst, std::fabs(static_cast<double>(got) - exact) / ulp);
  }
  EXPECT_LE(worst, 1.0);
  EXPECT_EQ(cpu::exp_f32(0.0f), 1.0f);
}

TEST(CpuSimd, ExpSaturatesAndPropagatesNan) {
  EXPECT_EQ(cpu::exp_f32(-100.0f), 0.0f);
  EXPECT_EQ(cpu::exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(cpu::exp_f32(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(cpu::exp_f32(std::numeric_limits<float>::quiet_NaN())));
}

TEST(CpuSimd, SigmoidMatchesTheFormulaOnBothSides) {
  for (float x : {-30.0f, -5.5f, -1.0f, -0.0f, 0.0f, 0.25f, 3.0f, 20.0f}) {
    const double exact = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
    EXPECT_NEAR(cpu::sigmoid_f32(x), exact, 2e-7 * exact) << x;
  }
}

// Every sign, exponent and upper mantissa (all 2^16 upper halves: zeros, subnormals, normals,
// the largest finite, inf, NaN payloads) with every kind of lower half (0, one, the halves at
// bit 15 and just around them, all ones, and a pseudo-random one per value): the bit patterns
// the branch-free conversions are checked on. fn(x) returns whether x converted right.
template <typename Check>
int64_t MismatchesOverBoundaryFloats(Check fn) {
  int64_t mismatches = 0;
  for (uint32_t high = 0; high <= 0xFFFFu; ++high) {
    const uint32_t lows[] = {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu,
                             (high * 2654435761u) & 0xFFFFu};
    for (uint32_t low : lows) {
      const uint32_t bits = (high << 16) | low;
      if (!fn(std::bit_cast<float>(bits)) && mismatches++ < 5) {
        ADD_FAILURE() << "wrong for the float 0x" << std::hex << bits;
      }
    }
  }
  return mismatches;
}

// The branch-free bf16 rounding gives math::float_to_bf16's bits (bf16's ties sit at bit 15).
// Checked over all 2^32 floats once by hand.
TEST(CpuSimd, Bf16RoundingMatchesTheReferenceEverywhere) {
  EXPECT_EQ(MismatchesOverBoundaryFloats([](float x) {
              const float r = cpu::round_bf16_f32(x), rr = math::round_to_bf16(x);
              return cpu::bf16_bits_f32(x) == math::float_to_bf16(x) &&
                     std::bit_cast<uint32_t>(r) == std::bit_cast<uint32_t>(rr);
            }),
            0);
}

// The branch-free e4m3 conversion gives math::float_to_e4m3's bits, past 448, inf and NaN
// included (e4m3's ties sit in the upper half: bit 19 for normals, up to bit 22 for its
// subnormals). Checked over all 2^32 floats once by hand.
TEST(CpuSimd, E4m3ConversionMatchesTheReferenceEverywhere) {
  EXPECT_EQ(MismatchesOverBoundaryFloats(
                [](float x) { return cpu::e4m3_bits_f32(x) == math::float_to_e4m3(x); }),
            0);
}

// exp_f32 computes every lane unclamped and selects 0, +inf or the NaN itself outside its
// range: over every exponent and sign (huge negative x wraps the exponent arithmetic, which the
// select must discard) the result is that constant, or within one ulp of the exponential inside.
// The sigmoid built on it stays within a few ulps of the formula. Both were checked over all
// 2^32 floats once by hand against the version that clamped x first: the same bits.
TEST(CpuSimd, ExpAndSigmoidOverEveryExponent) {
  constexpr float kLo = -87.3365478515625f, kHi = 88.3762626647949f;
  EXPECT_EQ(MismatchesOverBoundaryFloats([](float x) {
              const float got = cpu::exp_f32(x);
              if (std::isnan(x)) return std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(x);
              if (x < kLo) return std::bit_cast<uint32_t>(got) == 0u;
              if (x > kHi) return got == std::numeric_limits<float>::infinity();
              const double exact = std::exp(static_cast<double>(x));
              const float ref = static_cast<float>(exact);
              const double ulp = std::nextafter(ref, std::numeric_limits<float>::infinity()) - ref;
              return std::fabs(static_cast<double>(got) - exact) <= ulp;
            }),
            0);
  EXPECT_EQ(MismatchesOverBoundaryFloats([](float x) {
              const float got = cpu::sigmoid_f32(x);
              if (std::isnan(x)) return std::isnan(got);
              const double exact = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
              return std::fabs(got - exact) <= 4 * std::numeric_limits<float>::epsilon() * exact ||
                     (exact < 1e-37 && got == 0.0f);
            }),
            0);
}

// Float attention runs its (batch, head) pairs on one thread each: 1 and 2 threads give the
// same bits.
TEST(CpuSimd, FloatAttentionDoesNotDependOnTheThreadCount) {
  constexpr int64_t B = 2, T = 70, H = 3, hd = 40, D = H * hd, ld = 3 * D;
  const auto qkv = testing::to_float(testing::random_vector(B * T * ld, 11, -2.0, 2.0));
  const auto dout = testing::to_float(testing::random_vector(B * T * D, 12));
  struct Result {
    std::vector<float> out, lse, dqkv;
  };
  auto run = [&](int threads) {
    const int before = cpu_threads();
    set_cpu_threads(threads);
    Result r{std::vector<float>(B * T * D), std::vector<float>(B * H * T),
             std::vector<float>(B * T * ld)};
    std::vector<float> scratch(B * H * T);
    attention_forward(r.out.data(), D, r.lse.data(), qkv.data(), qkv.data() + D,
                      qkv.data() + 2 * D, ld, B, T, H, hd);
    attention_backward(r.dqkv.data(), r.dqkv.data() + D, r.dqkv.data() + 2 * D, ld,
                       scratch.data(), dout.data(), D, r.lse.data(), qkv.data(),
                       qkv.data() + D, qkv.data() + 2 * D, ld, B, T, H, hd);
    set_cpu_threads(before);
    return r;
  };
  const Result one = run(1), two = run(2);
  EXPECT_EQ(one.out, two.out);
  EXPECT_EQ(one.lse, two.lse);
  EXPECT_EQ(one.dqkv, two.dqkv);
}

}  // namespace
}  // namespace tessera::kernels
