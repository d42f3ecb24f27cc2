// CPU references for low-precision GEMMs, D = A·Bᵀ (DeepGEMM's orientation: A [m, k], B [n, k],
// both K-major, D [m, n] row-major, written). They reproduce the GPU recipes' numerics exactly
// where the recipe fixes them, to study and test them; they are slow (scalar loops) and never the
// training hot path.
//
// fp8_gemm, DeepSeek-V3's fine-grained FP8 GEMM (V3 report §3.3, V3-FACTS "FP8 recipe"): e4m3
// operands with per-tile fp32 scales (kernels/fp8_quantize.h). For output (i, j) and each K chunk
// c of 128 elements (the tile length; the last may be shorter):
//   partial_c = Σ_{k in c} a(i,k) · b(j,k)        in fp32, in k order; each product is exact
//   acc       = fma(sa(i,c) · sb(j,c), partial_c, acc)   fp32, chunks in order, acc from 0
// This is "promotion every 128 elements of K": the tensor core's partial sum is moved to an fp32
// register on the CUDA cores, scaled, and added there (DeepGEMM's final_accum += scale * accum).
//
// Without promotion (options.promote = false): what the report measures when the whole K is
// accumulated inside the tensor core, whose accumulator keeps only about 14 bits of mantissa on
// H800 (report §3.3.2: K = 4096 then loses up to ~2%). Emulated as ONE accumulator for all of K:
//   acc = truncate(acc + (sa(i,c) · sb(j,c)) · a(i,k) · b(j,k))     for every k in order
// where every operation rounds to fp32 and truncate() clears all but the top
// `unpromoted_mantissa_bits` fraction bits (rounds toward zero), after every addition. Scaling
// each product (one fp32 rounding, 2^-24) is needed because scales change between chunks; it is
// negligible next to the truncation (2^-14).
//
// bf16_gemm: inputs rounded to bf16 (nearest even), fp32 accumulation (kernels::gemm on the
// rounded copies; a product of two bf16 values is exact in fp32).
#pragma once

#include <cstdint>

#include "kernels/fp8_quantize.h"

namespace tessera::kernels {

struct Fp8GemmOptions {
  // Scale and add every 128-element K chunk's fp32 partial sum into an fp32 accumulator (V3).
  // false: the limited-precision single accumulator above. Default: true.
  bool promote = true;
  // Fraction bits the non-promoted accumulator keeps (fp32 has 23). Default: 14, H800's tensor
  // core per the V3 report. Only read when promote is false.
  int unpromoted_mantissa_bits = 14;
};

// D = A·Bᵀ from fine-grained fp8 operands. Either operand may use either tiling: forward and
// dgrad pair 1x128 activations with 128x128 weights, wgrad pairs two 1x128 operands.
// Throws std::invalid_argument on negative sizes or unpromoted_mantissa_bits outside [0, 23].
void fp8_gemm(float* d,                                                // [m, n]
              const uint8_t* a, const float* a_scales, Fp8Tiling a_tiling,  // [m, k] e4m3
              const uint8_t* b, const float* b_scales, Fp8Tiling b_tiling,  // [n, k] e4m3
              int64_t m, int64_t n, int64_t k, const Fp8GemmOptions& options = {});

// D = bf16(A)·bf16(B)ᵀ with fp32 accumulation. lda/ldb: row strides of A and B as stored.
void bf16_gemm(float* d,                    // [m, n]
               const float* a, int64_t lda,  // [m, k]
               const float* b, int64_t ldb,  // [n, k]
               int64_t m, int64_t n, int64_t k);

// x with its lowest 23 - bits fraction bits cleared (toward zero): a float accumulator that
// keeps only `bits` bits of mantissa. Exposed for the tests.
float truncate_mantissa(float x, int bits);

}  // namespace tessera::kernels
