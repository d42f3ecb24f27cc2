// GEMM operands as a low-precision GEMM sees them (kernels/backend.h Precision): op(x), x stored
// with row stride ldx, packed into `out` [rows, cols] with cols the GEMM's reduction dimension K,
// each value rounded the way the precision rounds it:
//   kF32   copied
//   kBF16  rounded to bf16 (nearest even)
//   kFP8   quantised to e4m3 with fine-grained scales (tiling: 1x128 tiles along K for
//          activations, 128x128 blocks for weights) and dequantised: code * scale in fp32
// A GEMM of two such operands in fp32 is the CPU emulation of the low-precision GEMM: the values
// are exactly the recipe's, the accumulation is fp32 throughout (at least as accurate as V3's
// promotion every 128 of K; kernels/quantized_gemm.h has the exact-order reference).
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"

namespace tessera::kernels {

void round_gemm_operand(float* out, Precision precision, Fp8Tiling tiling, Trans trans,
                        const float* x, int64_t ldx, int64_t rows, int64_t cols);

}  // namespace tessera::kernels
