// DeepSeek-V3's fine-grained FP8 GEMM on CUDA, our own kernel (no cuBLASLt block scaling): the
// operands and their scales are those of kernels/fp8_quantize.h, and each output accumulates
// exactly as kernels::fp8_gemm with promotion does (kernels/quantized_gemm.h): per 128-element K
// chunk an fp32 partial sum of decoded e4m3 products in k order (each product exact), then
// acc = fma(sa * sb, partial, acc), chunks in order. So it equals the CPU reference bit for bit,
// and runs on any GPU. A first, testable version: CUDA cores, no tensor cores; a cuBLASLt
// VEC128/BLK128x128 block-scaled path (Hopper and later) may replace it for speed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/fp8_quantize.h"

namespace tessera::kernels::cuda {

// D (m, n) [row stride ldd] = A·Bᵀ + beta·D, A [m, k] and B [n, k] packed e4m3 codes with their
// scales (a_tiling / b_tiling as kernels::fp8_gemm). beta is 0 (D overwritten, even NaN) or 1
// (the fp32 sum acc + D). Throws std::invalid_argument (before any launch) on negative sizes,
// ldd < max(n, 1), or beta other than 0 and 1.
void fp8_gemm(float* d, int64_t ldd,                                    //
              const uint8_t* a, const float* a_scales, Fp8Tiling a_tiling,  // [m, k]
              const uint8_t* b, const float* b_scales, Fp8Tiling b_tiling,  // [n, k]
              int64_t m, int64_t n, int64_t k, float beta, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
