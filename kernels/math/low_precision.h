// Low-precision number formats, written once for CPU and GPU (TESSERA_HD): bf16, fp8 E4M3 and
// fp8 E5M2, each held as its bit pattern (uint16_t / uint8_t). Narrowing from float rounds to
// nearest, ties to even, with subnormals rounded exactly; widening to float is exact.
//
//   format  exponent bias  largest finite  smallest subnormal  inf  NaN
//   bf16    8 bits   127   ~3.39e38        2^-133              yes  S.11111111.m, m != 0
//   E4M3    4 bits   7     448             2^-9                no   S.1111.111 only (OCP e4m3fn)
//   E5M2    5 bits   15    57344           2^-16               yes  S.11111.mm, mm != 0
//
// Overflow: bf16 and float_to_e5m2 are IEEE (a value that rounds past the largest finite one,
// and inf, become inf). E4M3 has no infinity, so float_to_e4m3 SATURATES: finite values beyond
// 448 AND ±inf become ±448, as CUDA's __NV_SATFINITE conversion does (a tile scaled by
// amax/448 never goes beyond anyway). float_to_e5m2_sat saturates the same way to ±57344.
// NaN stays NaN (sign kept) everywhere. The tests check every bit pattern and, against an exact Python
// reference, every halfway point (tests/kernels/low_precision_reference.py).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/hd.h"

namespace tessera::kernels::math {

constexpr float kE4M3Max = 448.0f;
constexpr float kE5M2Max = 57344.0f;

namespace low_precision_detail {

TESSERA_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

TESSERA_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// The magnitude bits (exponent field, then kMantissaBits fraction bits) of |x| rounded to
// nearest even in a format with that many fraction bits and exponent bias kBias, as if its
// exponent range were unbounded above: callers turn codes past their largest finite one into
// inf or saturate. abs_bits: the bits of a finite, non-negative float.
//
// |x| = significand * 2^exponent (integers). In the target, values of binade t (>= the lowest
// normal binade 1 - kBias; subnormals share that one's spacing) are multiples of
// 2^(t - kMantissaBits); dividing by that spacing and rounding gives n, and
// ((t + kBias - 1) << kMantissaBits) + n is the code: n's implicit leading bit adds the 1 to the
// exponent field, and a round-up that carries into the next binade lands on its code exactly.
template <int kMantissaBits, int kBias>
TESSERA_HD uint32_t round_magnitude(uint32_t abs_bits) {
  static_assert(kMantissaBits >= 1 && kMantissaBits <= 21 && kBias >= 1 && kBias <= 127,
                "a format narrower than float");
  const uint32_t exp_field = abs_bits >> 23;
  const uint32_t significand = exp_field ? (abs_bits & 0x7FFFFFu) | 0x800000u : abs_bits;
  const int exponent = (exp_field ? static_cast<int>(exp_field) : 1) - 150;
  // Float subnormals lie below every target's normal range: -127 stands for their binade.
  const int binade = exp_field ? static_cast<int>(exp_field) - 127 : -127;
  const int target_binade = binade > 1 - kBias ? binade : 1 - kBias;
  const int shift = target_binade - kMantissaBits - exponent;  // >= 23 - kMantissaBits > 0
  // significand < 2^24 is below half a spacing: rounds to zero (and keeps the shifts defined).
  if (shift > 24) return 0;
  uint32_t n = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (n & 1u))) ++n;
  return (static_cast<uint32_t>(target_binade + kBias - 1) << kMantissaBits) + n;
}

// Finite magnitude bits of a format to float (exact: every such value is a float).
template <int kMantissaBits, int kBias>
TESSERA_HD float magnitude_to_float(uint32_t code) {
  const uint32_t exp_field = code >> kMantissaBits;
  const uint32_t mantissa = code & ((1u << kMantissaBits) - 1u);
  if (exp_field == 0) {  // subnormal: mantissa * 2^(1 - bias - mantissa bits), a normal float
    return static_cast<float>(mantissa) *
           bits_float(static_cast<uint32_t>(1 - kBias - kMantissaBits + 127) << 23);
  }
  return bits_float((exp_field + (127 - kBias)) << 23 | mantissa << (23 - kMantissaBits));
}

TESSERA_HD float with_sign(float magnitude, uint32_t sign_bit) {
  return bits_float(float_bits(magnitude) | sign_bit << 31);
}

}  // namespace low_precision_detail

// ---- bf16: float's exponent, 7 fraction bits ----

TESSERA_HD uint16_t float_to_bf16(float x) {
  using namespace low_precision_detail;
  const uint32_t bits = float_bits(x);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  if (abs == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7F80u);
  const uint32_t code = round_magnitude<7, 127>(abs);  // at most 0x7F80 (inf) for finite x
  return static_cast<uint16_t>(sign | code);
}

TESSERA_HD float bf16_to_float(uint16_t bits) {
  return low_precision_detail::bits_float(static_cast<uint32_t>(bits) << 16);
}

// ---- E4M3 (OCP e4m3fn): 4 exponent bits, bias 7, 3 fraction bits, saturating ----

TESSERA_HD uint8_t float_to_e4m3(float x) {
  using namespace low_precision_detail;
  const uint32_t bits = float_bits(x);
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);  // the only NaN
  if (abs == 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Eu);  // inf -> ±448
  const uint32_t code = round_magnitude<3, 7>(abs);
  return static_cast<uint8_t>(sign | (code < 0x7Eu ? code : 0x7Eu));  // past 448 -> ±448
}

TESSERA_HD float e4m3_to_float(uint8_t bits) {
  using namespace low_precision_detail;
  const uint32_t sign = bits >> 7;
  const uint32_t magnitude = bits & 0x7Fu;
  if (magnitude == 0x7Fu) return bits_float(sign << 31 | 0x7FC00000u);
  return with_sign(magnitude_to_float<3, 7>(magnitude), sign);
}

// ---- E5M2: 5 exponent bits, bias 15, 2 fraction bits, IEEE specials ----

// IEEE overflow: values that round past 57344 (from 61440 on: the tie goes to even, which is
// the next power of two) and ±inf become ±inf.
TESSERA_HD uint8_t float_to_e5m2(float x) {
  using namespace low_precision_detail;
  const uint32_t bits = float_bits(x);
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Eu);  // quiet NaN
  const uint32_t code = abs == 0x7F800000u ? 0x7Cu : round_magnitude<2, 15>(abs);
  return static_cast<uint8_t>(sign | (code < 0x7Cu ? code : 0x7Cu));
}

// Saturating: finite values that round past 57344, and ±inf, become ±57344.
TESSERA_HD uint8_t float_to_e5m2_sat(float x) {
  using namespace low_precision_detail;
  const uint32_t bits = float_bits(x);
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Eu);
  const uint32_t code = abs == 0x7F800000u ? 0x7Bu : round_magnitude<2, 15>(abs);
  return static_cast<uint8_t>(sign | (code < 0x7Bu ? code : 0x7Bu));
}

TESSERA_HD float e5m2_to_float(uint8_t bits) {
  using namespace low_precision_detail;
  const uint32_t sign = bits >> 7;
  const uint32_t magnitude = bits & 0x7Fu;
  if (magnitude >= 0x7Cu) {
    return bits_float(sign << 31 | (magnitude == 0x7Cu ? 0x7F800000u : 0x7FC00000u));
  }
  return with_sign(magnitude_to_float<2, 15>(magnitude), sign);
}

// ---- The float a value becomes after a round trip (what emulated GEMMs compute with) ----

TESSERA_HD float round_to_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }
TESSERA_HD float round_to_e4m3(float x) { return e4m3_to_float(float_to_e4m3(x)); }
TESSERA_HD float round_to_e5m2(float x) { return e5m2_to_float(float_to_e5m2(x)); }

}  // namespace tessera::kernels::math
