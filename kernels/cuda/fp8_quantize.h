// Fine-grained FP8 quantisation on CUDA: the launcher of kernels/fp8_quantize.h, same arguments,
// layouts and checks, over device pointers, enqueued on `stream`. Each element follows the shared
// rule (kernels/math/fp8_scaling.h), and a tile's amax is a max (exact in any order), so codes
// and scales equal the CPU's bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"

namespace tessera::kernels::cuda {

// codes [rows, cols] packed, scales [fp8_scale_rows(tiling, rows), fp8_scale_cols(cols)] =
// quantise(op(x)), op(x) = x (kNo, stored [rows, cols]) or xᵀ (kYes, stored [cols, rows]), row
// stride ldx. Throws std::invalid_argument (before any launch) on negative sizes or a row stride
// shorter than a stored row.
void fp8_quantize(uint8_t* codes, float* scales, Fp8Tiling tiling, Trans trans, const float* x,
                  int64_t ldx, int64_t rows, int64_t cols, cudaStream_t stream = nullptr);

// x [rows, cols] = e4m3_to_float(code) * scale (kernels/fp8_quantize.h's fp8_dequantize, same
// layouts and checks), enqueued on `stream`.
void fp8_dequantize(float* x, const uint8_t* codes, const float* scales, Fp8Tiling tiling,
                    int64_t rows, int64_t cols, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
