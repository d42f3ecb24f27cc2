#include "kernels/cuda/low_precision_gemm.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/device.h"
#include "kernels/cuda/fp8_gemm.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/low_precision.h"

namespace tessera::kernels::cuda {

namespace {

// At least n elements of scratch. Kernels enqueued earlier may still read the old buffer, so
// growing waits for the stream before freeing it.
template <typename U>
U* scratch(DeviceBuffer<U>& buffer, int64_t n, cudaStream_t stream) {
  if (buffer.size() < n) {
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    buffer = DeviceBuffer<U>();
    buffer = DeviceBuffer<U>(n);
  }
  return buffer.data();
}

Trans flip(Trans t) { return t == Trans::kNo ? Trans::kYes : Trans::kNo; }

}  // namespace

void LowPrecisionGemm::run(Precision precision, int64_t m, int64_t n, int64_t k, const float* a,
                           int64_t lda, Trans trans_a, Fp8Tiling tiling_a, const float* b,
                           int64_t ldb, Trans trans_b, Fp8Tiling tiling_b, float beta, float* c,
                           int64_t ldc) {
  if (precision == Precision::kF32) {
    throw std::invalid_argument("cuda LowPrecisionGemm: fp32 is the plain cuBLAS GEMM's");
  }
  if (beta != 0.0f && beta != 1.0f) {
    throw std::invalid_argument("cuda LowPrecisionGemm: beta " + std::to_string(beta) +
                                " is not 0 or 1");
  }
  // B is [n, k] as the GEMM sees it, i.e. the transpose of kernels::gemm's op(B) [k, n].
  check_gemm_args("cuda low-precision gemm", trans_a, flip(trans_b), m, n, k, lda, ldb, ldc,
                  "cuBLAS");
  cudaStream_t stream = nullptr;
  check_cublas(cublasGetStream(handle_, &stream), "cublasGetStream");
  if (m == 0 || n == 0) return;
  if (precision == Precision::kBF16) {
    run_bf16(m, n, k, a, lda, trans_a, b, ldb, trans_b, beta, c, ldc, stream);
  } else {
    run_fp8(m, n, k, a, lda, trans_a, tiling_a, b, ldb, trans_b, tiling_b, beta, c, ldc, stream);
  }
}

// Packed row-major A [m, k] and B [n, k] are column-major [k, m] and [k, n] with leading
// dimension k; the row-major C [m, n] (ld ldc) is column-major Cᵀ [n, m], and Cᵀ = B·Aᵀ is
// cuBLAS's op(B) = Bᵀ-of-[k, n] (CUBLAS_OP_T) times A (CUBLAS_OP_N).
void LowPrecisionGemm::run_bf16(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                Trans trans_a, const float* b, int64_t ldb, Trans trans_b,
                                float beta, float* c, int64_t ldc, cudaStream_t stream) {
  if (k == 0) {  // C = beta C without trusting cuBLAS's k == 0 corner (as gemm_cublas.cc)
    if (beta == 0.0f) {
      TESSERA_CUDA_CHECK(
          cudaMemset2DAsync(c, ldc * sizeof(float), 0, n * sizeof(float), m, stream));
    }
    return;
  }
  uint16_t* a16 = scratch(a_bf16_, m * k, stream);
  uint16_t* b16 = scratch(b_bf16_, n * k, stream);
  encode_bf16_2d(a16, trans_a, a, lda, m, k, stream);
  encode_bf16_2d(b16, trans_b, b, ldb, n, k, stream);
  const float alpha = 1.0f;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  check_cublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, ni, mi, ki, &alpha, b16,
                            CUDA_R_16BF, ki, a16, CUDA_R_16BF, ki, &beta, c, CUDA_R_32F,
                            static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx(bf16 inputs, fp32 compute and output)");
}

void LowPrecisionGemm::run_fp8(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                               Trans trans_a, Fp8Tiling tiling_a, const float* b, int64_t ldb,
                               Trans trans_b, Fp8Tiling tiling_b, float beta, float* c,
                               int64_t ldc, cudaStream_t stream) {
  uint8_t* a8 = scratch(a_e4m3_, m * k, stream);
  uint8_t* b8 = scratch(b_e4m3_, n * k, stream);
  float* sa = scratch(a_scales_, fp8_scale_rows(tiling_a, m) * fp8_scale_cols(k), stream);
  float* sb = scratch(b_scales_, fp8_scale_rows(tiling_b, n) * fp8_scale_cols(k), stream);
  fp8_quantize(a8, sa, tiling_a, trans_a, a, lda, m, k, stream);
  fp8_quantize(b8, sb, tiling_b, trans_b, b, ldb, n, k, stream);
  fp8_gemm(c, ldc, a8, sa, tiling_a, b8, sb, tiling_b, m, n, k, beta, stream);
}

}  // namespace tessera::kernels::cuda
