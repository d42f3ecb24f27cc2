// Vectorisable float math for the CPU kernels' hot loops (not part of the public API).
//
// The project is compiled for baseline x86-64 (no -march: binaries run on any node), which
// leaves our own loops at SSE2 width and calling the scalar libm expf. Hot float loops are
// instead written as `#pragma omp simd` loops in functions marked TESSERA_CPU_CLONES: GCC
// compiles one copy per ISA below and the loader picks the best the CPU has (function
// multiversioning through ifunc). The kernels compile without FP contraction (-ffp-contract=off
// in kernels/CMakeLists.txt: GCC's default fuses a * b + c even in ISO C++ mode, in the clones
// that have fma only), so every clone rounds each operation identically: results do not
// depend on the ISA picked, only reductions (lane_sum below: kLanes partial sums) reorder sums,
// and they do so the same way on every ISA.
//
// expf here is `exp_f32`: branch-free (Cephes' polynomial, range-reduced by ln 2), within one
// ulp of the exact exponential on [-87.33, 88.37]; 0 below (where expf is subnormal or 0), +inf
// above (expf overflows from 88.72), NaN for NaN. The kernels call it with x <= 0 (softmax,
// sigmoid of -|x|, log-sum-exp).
#pragma once

#include <bit>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define TESSERA_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TESSERA_CPU_CLONES
#endif

namespace tessera::kernels::cpu {

// Partial sums of the vectorised reductions: one per lane of the widest ISA (16 floats in a
// 512-bit register); narrower ISAs keep the same 16 partial sums in several registers.
constexpr int kLanes = 16;

// sum_{i < n} term(i) in kLanes partial sums (lane l takes i = l mod kLanes, in order), then the
// partial sums in lane order: the order of every vectorised sum of the kernels, the same on every
// ISA. Always inlined, so it takes the calling clone's ISA.
template <typename Acc, typename Term>
[[gnu::always_inline]] inline Acc lane_sum(int64_t n, Term term) {
  Acc part[kLanes] = {};
  const int64_t full = n / kLanes * kLanes;
  for (int64_t i0 = 0; i0 < full; i0 += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) part[l] += term(i0 + l);
  }
  for (int64_t i = full; i < n; ++i) part[i - full] += term(i);
  Acc sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += part[l];
  return sum;
}

inline float exp_f32(float x) {
  constexpr float kHi = 88.3762626647949f, kLo = -87.3365478515625f;
  // No clamping of x first: outside [kLo, kHi] (and for NaN) the selects at the end replace
  // whatever the lanes computed, so inside it every bit is as with the clamp, and the loops run
  // ~23% faster without it (Zen 5; the same bits for all 2^32 inputs). The exponent arithmetic
  // is unsigned so that the discarded lanes' wrap-around is defined.
  // n = round(x / ln 2): adding 1.5 * 2^23 rounds to an integer in the low mantissa bits.
  constexpr float kShifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + kShifter;
  const float n = t - kShifter;
  const uint32_t ni = std::bit_cast<uint32_t>(t) - 0x4B400000u;
  // r = x - n ln 2, with ln 2 split in two so n * hi is exact.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  float out = y * std::bit_cast<float>((ni + 127u) << 23);
  out = x < kLo ? 0.0f : out;
  out = x > kHi ? std::bit_cast<float>(0x7F800000) : out;
  return x != x ? x : out;  // NaN in, NaN out
}

// 1 / (1 + exp(-x)), evaluated as math::sigmoid does (exp of -|x| only: no overflow).
inline float sigmoid_f32(float x) {
  const float e = exp_f32(x >= 0.0f ? -x : x);
  return (x >= 0.0f ? 1.0f : e) / (1.0f + e);  // one division: the same bits as either branch's
}

// math::float_to_bf16 without branches, so loops over it vectorise (that one costs ~7 ns an
// element, more than the bf16 GEMM it feeds): round to nearest even on the bit pattern, which
// bf16's fp32 exponent range makes exact for normals, subnormals, overflow to inf and inf
// itself; NaN keeps its sign and payload top and is made quiet. The same bits as
// math::float_to_bf16 for every float (tests/kernels/cpu_simd_test.cc).
inline uint16_t bf16_bits_f32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((bits & 0x7FFFFFFFu) > 0x7F800000u ? (bits >> 16) | 0x0040u
                                                                   : rounded);
}

// x rounded to bf16 and widened back (math::round_to_bf16).
inline float round_bf16_f32(float x) {
  return std::bit_cast<float>(static_cast<uint32_t>(bf16_bits_f32(x)) << 16);
}

// math::float_to_e4m3 without branches (fp8 quantises every GEMM operand and every kept
// activation; the reference costs tens of ns an element). |x| >= 2^-6 (e4m3's normals): round
// to nearest even on the bit pattern at 3 fraction bits and rebias (float exponent 121 is e4m3's
// field 1); below, |x| + 2^14 rounds |x| to e4m3's subnormal step 2^-9 in fp32's own nearest
// even, and the step count is the code (8 reaching 2^-6, the first normal's code). Past 448 and
// inf saturate to 0x7E, NaN gives 0x7F, the sign is kept: math::float_to_e4m3's bits for every
// float (tests/kernels/cpu_simd_test.cc).
inline uint8_t e4m3_bits_f32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  const uint32_t normal = ((abs + 0x7FFFFu + ((abs >> 20) & 1u)) >> 20) - (120u << 3);
  const float steps = ((std::bit_cast<float>(abs) + 16384.0f) - 16384.0f) * 512.0f;
  uint32_t code = abs < 0x3C800000u ? static_cast<uint32_t>(steps) : normal;
  code = code < 0x7Eu ? code : 0x7Eu;
  code = abs > 0x7F800000u ? 0x7Fu : code;
  return static_cast<uint8_t>(((bits >> 24) & 0x80u) | code);
}

}  // namespace tessera::kernels::cpu
