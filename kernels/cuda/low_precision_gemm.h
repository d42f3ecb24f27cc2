// The CUDA backend's bf16 and fp8 GEMMs (kernels/backend.h Precision), with the CPU backend's
// numerics contract: the operands are rounded exactly as kernels/gemm_operand.h rounds them (the
// shared conversions of kernels/math), products are exact in fp32 and accumulate in fp32.
//   kBF16  operands rounded to bf16 (nearest even) on the device, then cublasGemmEx with
//          CUDA_R_16BF inputs, CUBLAS_COMPUTE_32F and an fp32 output; the summation order is
//          cuBLAS's, so results agree with the CPU to fp32 summation error, not bitwise.
//   kFP8   operands quantised to e4m3 with V3's fine-grained scales (kernels/cuda/fp8_quantize.h:
//          codes and scales equal the CPU's), then our own GEMM (kernels/cuda/fp8_gemm.h), which
//          promotes every 128 of K exactly as kernels::fp8_gemm. The CPU backend multiplies the
//          dequantised values with one fp32 GEMM instead: the two agree to fp32 summation error.
// Scratch (the rounded operands) grows to the largest GEMM seen and is reused; growing waits
// for the stream, since work already enqueued may still read the old scratch.
//
// Thread-safety: one thread drives an instance (as the backend's ops).
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"

namespace tessera::kernels::cuda {

class LowPrecisionGemm {
 public:
  // Runs on `handle`'s stream. REQUIRES: the handle outlives this object.
  explicit LowPrecisionGemm(cublasHandle_t handle) : handle_(handle) {}

  // C (m, n) [ld ldc] = A·Bᵀ + beta·C, A = op(a) [m, k] and B = op(b) [n, k] as the precision's
  // GEMM sees them; op(x) = x (kNo, stored [rows, k], row stride ld) or xᵀ (kYes, stored
  // [k, rows]). tiling_a/tiling_b: the fp8 tilings (ignored for bf16). beta is 0 or 1.
  // Throws std::invalid_argument for kF32 (the caller's fp32 GEMM does that), for bad sizes and
  // strides (as kernels::gemm's checks, within cuBLAS's 32-bit interface) and beta not 0 or 1.
  void run(Precision precision, int64_t m, int64_t n, int64_t k,     //
           const float* a, int64_t lda, Trans trans_a, Fp8Tiling tiling_a,  //
           const float* b, int64_t ldb, Trans trans_b, Fp8Tiling tiling_b,  //
           float beta, float* c, int64_t ldc);

 private:
  void run_bf16(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, Trans trans_a,
                const float* b, int64_t ldb, Trans trans_b, float beta, float* c, int64_t ldc,
                cudaStream_t stream);
  void run_fp8(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, Trans trans_a,
               Fp8Tiling tiling_a, const float* b, int64_t ldb, Trans trans_b,
               Fp8Tiling tiling_b, float beta, float* c, int64_t ldc, cudaStream_t stream);

  cublasHandle_t handle_;
  DeviceBuffer<uint16_t> a_bf16_, b_bf16_;
  DeviceBuffer<uint8_t> a_e4m3_, b_e4m3_;
  DeviceBuffer<float> a_scales_, b_scales_;
};

}  // namespace tessera::kernels::cuda
