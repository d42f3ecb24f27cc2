// Fine-grained FP8 tensors on the CPU (DeepSeek-V3's recipe, DeepGEMM's layout): e4m3 codes plus
// fp32 scales held in a separate array, one scale per tile along K (the GEMM's reduction
// dimension, the columns here) and, for weights, per 128 rows too:
//
//   Fp8Tiling::k1x128    activations: one scale per row per 128 columns, scales [rows, ⌈cols/128⌉]
//   Fp8Tiling::k128x128  weights: one scale per 128x128 block, scales [⌈rows/128⌉, ⌈cols/128⌉]
//
// Scales are row-major, ragged last tiles allowed. The element rule is kernels/math/fp8_scaling.h.
// Backward passes need K along the other dimension (wgrad's K is the tokens: 128x1 tiles of the
// activations, V3 report §3.3): quantise with Trans::kYes, which tiles op(x) = xᵀ and writes its
// codes transposed, ready to be a GEMM operand. For 128x128 blocks, kYes gives exactly the
// transpose of kNo's codes and scales (a block's amax does not depend on the orientation).
#pragma once

#include <cstdint>

#include "kernels/gemm.h"

namespace tessera::kernels {

constexpr int64_t kFp8TileK = 128;  // tile length along K, and a weight block's height

enum class Fp8Tiling : uint8_t { k1x128, k128x128 };

// Shape of the scale array of a [rows, cols] fp8 tensor tiled as `tiling`.
int64_t fp8_scale_rows(Fp8Tiling tiling, int64_t rows);
int64_t fp8_scale_cols(int64_t cols);

// codes/scales = quantise(op(x)), op(x) = x (trans kNo, x stored [rows, cols]) or xᵀ (kYes, x
// stored [cols, rows]); ldx is the row stride of x as stored. Codes are packed [rows, cols].
// Throws std::invalid_argument on negative sizes or a row stride shorter than a stored row.
void fp8_quantize(uint8_t* codes,   // [rows, cols]
                  float* scales,    // [fp8_scale_rows(tiling, rows), fp8_scale_cols(cols)]
                  Fp8Tiling tiling, Trans trans,
                  const float* x, int64_t ldx,  // op(x): [rows, cols]
                  int64_t rows, int64_t cols);

// x = e4m3_to_float(code) * scale, rounded to fp32. (Exact references multiply in fp64.)
void fp8_dequantize(float* x,                           // [rows, cols]
                    const uint8_t* codes,               // [rows, cols]
                    const float* scales, Fp8Tiling tiling,
                    int64_t rows, int64_t cols);

}  // namespace tessera::kernels
