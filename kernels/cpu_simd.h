// Vectorisable float math for the CPU kernels' hot loops (not part of the public API).
//
// The project is compiled for baseline x86-64 (no -march: binaries run on any node), which
// leaves our own loops at SSE2 width and calling the scalar libm expf. Hot float loops are
// instead written as `#pragma omp simd` loops in functions marked TESSERA_CPU_CLONES: GCC
// compiles one copy per ISA below and the loader picks the best the CPU has (function
// multiversioning through ifunc). The project compiles without FP contraction (ISO C++,
// -ffp-contract=off), so every clone rounds each operation identically: results do not
// depend on the ISA picked, only reductions written with kLanes partial sums reorder sums, and
// they do so the same way on every ISA.
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

inline float exp_f32(float x) {
  constexpr float kHi = 88.3762626647949f, kLo = -87.3365478515625f;
  float xc = x > kHi ? kHi : x;
  xc = xc < kLo ? kLo : xc;
  // n = round(x / ln 2): adding 1.5 * 2^23 rounds to an integer in the low mantissa bits.
  constexpr float kShifter = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kShifter;
  const float n = t - kShifter;
  const int32_t ni = std::bit_cast<int32_t>(t) - 0x4B400000;
  // r = x - n ln 2, with ln 2 split in two so n * hi is exact.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  float out = y * std::bit_cast<float>((ni + 127) << 23);
  out = x < kLo ? 0.0f : out;
  out = x > kHi ? std::bit_cast<float>(0x7F800000) : out;
  return x != x ? x : out;  // NaN in, NaN out
}

// 1 / (1 + exp(-x)), evaluated as math::sigmoid does (exp of -|x| only: no overflow).
inline float sigmoid_f32(float x) {
  const float e = exp_f32(x >= 0.0f ? -x : x);
  return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

}  // namespace tessera::kernels::cpu
