// Low-precision conversions on CUDA: kernels/math/low_precision.h applied element-wise over
// device arrays, enqueued on `stream`. The same functions as the CPU's, so the codes are equal
// bit for bit (tests/kernels/cuda/low_precision_cuda_test.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/gemm.h"

namespace tessera::kernels::cuda {

// out[i] = code of x[i]: bf16 (IEEE overflow), e4m3 (saturating), e5m2 (IEEE), e5m2 saturating.
void encode_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream = nullptr);
void encode_e4m3(uint8_t* out, const float* x, int64_t n, cudaStream_t stream = nullptr);
void encode_e5m2(uint8_t* out, const float* x, int64_t n, cudaStream_t stream = nullptr);
void encode_e5m2_sat(uint8_t* out, const float* x, int64_t n, cudaStream_t stream = nullptr);

// out[i] = the float value of code[i] (exact).
void decode_bf16(float* out, const uint16_t* code, int64_t n, cudaStream_t stream = nullptr);
void decode_e4m3(float* out, const uint8_t* code, int64_t n, cudaStream_t stream = nullptr);
void decode_e5m2(float* out, const uint8_t* code, int64_t n, cudaStream_t stream = nullptr);

// out [rows, cols] packed = bf16 codes of op(x): x stored [rows, cols] (kNo) or [cols, rows]
// (kYes) with row stride ldx. The CUDA bf16 GEMMs' operands (kernels/cuda/low_precision_gemm.h),
// packed as the CPU's round_gemm_operand packs them. Throws std::invalid_argument on negative
// sizes or a row stride shorter than a stored row.
void encode_bf16_2d(uint16_t* out, Trans trans, const float* x, int64_t ldx, int64_t rows,
                    int64_t cols, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
