// kernels/math/low_precision.h: every bit pattern of every format round-trips; rounding is to the
// nearest value with ties to even (checked on a sweep of floats against each result's
// neighbours); the documented overflow, saturation, subnormal, zero and NaN cases. The exact
// Python reference (low_precision_reference.py, ctest kernels.low_precision_reference) checks
// every halfway point of every format as well.
#include "kernels/math/low_precision.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tessera::kernels::math {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(LowPrecision, EveryBf16PatternRoundTrips) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t code = static_cast<uint16_t>(c);
    const float x = bf16_to_float(code);
    EXPECT_EQ(std::bit_cast<uint32_t>(x), c << 16) << c;  // widening is exact
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(x)))) << c;
      EXPECT_EQ(float_to_bf16(x) & 0x8000, code & 0x8000) << c;  // sign kept
    } else {
      EXPECT_EQ(float_to_bf16(x), code) << c;
    }
  }
}

TEST(LowPrecision, EveryE4M3PatternRoundTrips) {
  for (uint32_t c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const float x = e4m3_to_float(code);
    EXPECT_FALSE(std::isinf(x)) << c;  // e4m3fn has no infinity
    EXPECT_EQ(std::isnan(x), (c & 0x7F) == 0x7F) << c;
    EXPECT_EQ(float_to_e4m3(x), code) << c;  // NaN included: S.1111.111 keeps its sign
    EXPECT_EQ(round_to_e4m3(x) == x || std::isnan(x), true) << c;
  }
}

TEST(LowPrecision, EveryE5M2PatternRoundTrips) {
  for (uint32_t c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const float x = e5m2_to_float(code);
    const uint32_t magnitude = c & 0x7F;
    EXPECT_EQ(std::isinf(x), magnitude == 0x7C) << c;
    EXPECT_EQ(std::isnan(x), magnitude > 0x7C) << c;
    if (std::isnan(x)) {
      EXPECT_EQ(float_to_e5m2(x), (c & 0x80) | 0x7E) << c;  // the quiet NaN, sign kept
      EXPECT_EQ(float_to_e5m2_sat(x), (c & 0x80) | 0x7E) << c;
    } else {
      EXPECT_EQ(float_to_e5m2(x), code) << c;
      // Saturating: the same for finite codes; inf becomes the largest finite value.
      EXPECT_EQ(float_to_e5m2_sat(x), magnitude == 0x7C ? (c & 0x80) | 0x7B : c) << c;
    }
  }
}

// Positive codes in order have increasing values, and the sign bit only negates.
TEST(LowPrecision, CodesAreOrderedAndSigned) {
  for (uint32_t c = 0; c + 1 < 0x7F80; ++c) {
    ASSERT_LT(bf16_to_float(static_cast<uint16_t>(c)), bf16_to_float(static_cast<uint16_t>(c + 1)));
  }
  for (uint32_t c = 0; c + 1 < 0x7F; ++c) {
    ASSERT_LT(e4m3_to_float(static_cast<uint8_t>(c)), e4m3_to_float(static_cast<uint8_t>(c + 1)));
  }
  for (uint32_t c = 0; c + 1 < 0x7D; ++c) {
    ASSERT_LT(e5m2_to_float(static_cast<uint8_t>(c)), e5m2_to_float(static_cast<uint8_t>(c + 1)));
  }
  for (uint32_t c = 0; c < 0x7F; ++c) {
    const uint8_t p = static_cast<uint8_t>(c), n = static_cast<uint8_t>(c | 0x80);
    EXPECT_EQ(std::bit_cast<uint32_t>(e4m3_to_float(n)),
              std::bit_cast<uint32_t>(e4m3_to_float(p)) | 0x80000000u);
    EXPECT_EQ(std::bit_cast<uint32_t>(e5m2_to_float(n)),
              std::bit_cast<uint32_t>(e5m2_to_float(p)) | 0x80000000u);
  }
}

// Correct rounding on a sweep of ~2M positive floats (every 1021st bit pattern, all binades) and
// their negatives: no representable neighbour of the result is closer to x, and on a tie the
// result has an even code. Neighbours are found by stepping the code, independently of how the
// conversion computed it. Overflowing inputs are skipped here (the overflow tests cover them).
template <typename Code>
void expect_correctly_rounded(const char* name, float x, Code code, Code sign_bit,
                              Code max_finite, float (*decode)(Code)) {
  const Code sign = static_cast<Code>(code & sign_bit);
  const Code magnitude = static_cast<Code>(code & ~sign_bit);
  ASSERT_LE(magnitude, max_finite) << name << " x=" << x;
  const double xd = x;
  const double err = std::abs(static_cast<double>(decode(code)) - xd);
  for (int step : {-1, 1}) {
    if ((step < 0 && magnitude == 0) || (step > 0 && magnitude == max_finite)) continue;
    const double other = decode(static_cast<Code>(sign | (magnitude + step)));
    const double other_err = std::abs(other - xd);
    ASSERT_LE(err, other_err) << name << " x=" << x << " code=" << +code;
    if (err == other_err) {
      ASSERT_EQ(magnitude % 2, 0) << name << " tie x=" << x;
    }
  }
}

TEST(LowPrecision, RoundsToNearestEvenOnASweep) {
  for (uint32_t bits = 0; bits < 0x7F800000u; bits += 1021) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      const float x = std::bit_cast<float>(bits | sign);
      const float ax = std::abs(x);
      // Stay below each format's overflow threshold (largest finite + half its spacing).
      if (ax < 0x1.FFp127f) {
        expect_correctly_rounded<uint16_t>("bf16", x, float_to_bf16(x), 0x8000, 0x7F7F,
                                           bf16_to_float);
      }
      if (ax <= 464.0f) {
        expect_correctly_rounded<uint8_t>("e4m3", x, float_to_e4m3(x), 0x80, 0x7E, e4m3_to_float);
      }
      if (ax < 61440.0f) {
        expect_correctly_rounded<uint8_t>("e5m2", x, float_to_e5m2(x), 0x80, 0x7B, e5m2_to_float);
        ASSERT_EQ(float_to_e5m2_sat(x), float_to_e5m2(x));
      }
      ASSERT_EQ(std::bit_cast<uint32_t>(round_to_bf16(x)),
                std::bit_cast<uint32_t>(bf16_to_float(float_to_bf16(x))));
      ASSERT_EQ(std::bit_cast<uint32_t>(round_to_e4m3(x)),
                std::bit_cast<uint32_t>(e4m3_to_float(float_to_e4m3(x))));
      if (HasFatalFailure()) return;  // one report, not millions
    }
  }
}

TEST(LowPrecision, TiesGoToEven) {
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3F80);      // 1 | 1+2^-7: even is 1
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);  // 1+2^-7 | 1+2^-6: even is the latter
  EXPECT_EQ(float_to_e4m3(1.0625f), 0x38);               // 1 | 1.125 -> 1
  EXPECT_EQ(float_to_e4m3(1.1875f), 0x3A);               // 1.125 | 1.25 -> 1.25
  EXPECT_EQ(float_to_e4m3(1.0625f + 0x1p-20f), 0x39);    // just above the tie -> up
  EXPECT_EQ(float_to_e5m2(1.125f), 0x3C);                // 1 | 1.25 -> 1
  EXPECT_EQ(float_to_e5m2(1.375f), 0x3E);                // 1.25 | 1.5 -> 1.5
  EXPECT_EQ(float_to_e4m3(-1.0625f), 0xB8);              // sign does not change the rounding
}

TEST(LowPrecision, SubnormalsAndZeros) {
  EXPECT_EQ(e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x07), 7 * 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x08), 0x1p-6f);               // smallest normal
  EXPECT_EQ(float_to_e4m3(0x1p-10f), 0x00);              // half the smallest subnormal: tie -> 0
  EXPECT_EQ(float_to_e4m3(0x1p-10f + 0x1p-30f), 0x01);
  EXPECT_EQ(float_to_e4m3(3 * 0x1p-10f), 0x02);          // 1.5 * 2^-9: tie -> 2 * 2^-9
  EXPECT_EQ(float_to_e4m3(15 * 0x1p-10f), 0x08);         // 7.5 * 2^-9 rounds up into the normals
  EXPECT_EQ(e5m2_to_float(0x01), 0x1p-16f);
  EXPECT_EQ(float_to_e5m2(0x1p-17f), 0x00);
  EXPECT_EQ(float_to_e5m2(0x1p-17f + 0x1p-40f), 0x01);
  EXPECT_EQ(bf16_to_float(0x0001), 0x1p-133f);           // bf16 subnormal (a float subnormal)
  EXPECT_EQ(float_to_bf16(0x1p-134f), 0x0000);           // tie -> even (0)
  EXPECT_EQ(float_to_bf16(3 * 0x1p-134f), 0x0002);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Negative zero and negative values that round to zero keep their sign.
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_e5m2(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3(-1e-30f), 0x80);
  EXPECT_TRUE(std::signbit(e4m3_to_float(0x80)) && e4m3_to_float(0x80) == 0.0f);
  EXPECT_TRUE(std::signbit(round_to_e4m3(-1e-30f)));
}

TEST(LowPrecision, OverflowSaturationAndNaN) {
  // E4M3 saturates: past 448 (the tie at 464 goes to 448, which is even), and inf, give ±448.
  EXPECT_EQ(e4m3_to_float(0x7E), kE4M3Max);
  EXPECT_EQ(float_to_e4m3(464.0f), 0x7E);
  EXPECT_EQ(float_to_e4m3(465.0f), 0x7E);
  EXPECT_EQ(float_to_e4m3(1e30f), 0x7E);
  EXPECT_EQ(float_to_e4m3(kInf), 0x7E);
  EXPECT_EQ(float_to_e4m3(-kInf), 0xFE);
  EXPECT_EQ(float_to_e4m3(std::numeric_limits<float>::max()), 0x7E);
  EXPECT_EQ(float_to_e4m3(kNaN), 0x7F);
  EXPECT_EQ(float_to_e4m3(-kNaN), 0xFF);
  // E5M2 is IEEE: 61440 ties 57344 | 65536 and goes to the even one, 65536 = inf.
  EXPECT_EQ(e5m2_to_float(0x7B), kE5M2Max);
  EXPECT_EQ(float_to_e5m2(61439.996f), 0x7B);
  EXPECT_EQ(float_to_e5m2(61440.0f), 0x7C);
  EXPECT_EQ(float_to_e5m2(-kInf), 0xFC);
  EXPECT_EQ(float_to_e5m2_sat(61440.0f), 0x7B);
  EXPECT_EQ(float_to_e5m2_sat(-kInf), 0xFB);
  EXPECT_TRUE(std::isnan(e5m2_to_float(float_to_e5m2(kNaN))));
  EXPECT_TRUE(std::isnan(e5m2_to_float(float_to_e5m2_sat(kNaN))));
  // bf16 is IEEE: rounding past the largest finite value gives inf.
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(float_to_bf16(-kInf), 0xFF80);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x7F7F7FFFu)), 0x7F7F);  // below the tie
  // A signalling NaN whose payload sits in the low bits stays a NaN (not inf).
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(round_to_bf16(kNaN)));
  EXPECT_TRUE(std::isnan(round_to_e4m3(kNaN)));
}

}  // namespace
}  // namespace tessera::kernels::math
