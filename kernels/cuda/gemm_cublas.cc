// Row-major GEMM through column-major cuBLAS: a row-major (R, S) matrix with row stride ld is
// the column-major (S, R) matrix with leading dimension ld, i.e. its transpose. So
// C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in column-major: call cuBLAS with the
// operands swapped (B first), the same transpose flags, and m = N, n = M.
#include "kernels/cuda/gemm_cublas.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/device.h"

namespace tessera::kernels::cuda {

namespace {

// C = beta * C for K == 0, with BLAS semantics (beta == 0 overwrites, even NaN), on the
// handle's stream; done here rather than trusting cuBLAS's k == 0 corner.
template <typename T>
void scale_c(cublasHandle_t handle, int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  cudaStream_t stream = nullptr;
  check_cublas(cublasGetStream(handle, &stream), "cublasGetStream");
  if (beta == T(0)) {
    TESSERA_CUDA_CHECK(cudaMemset2DAsync(C, ldc * sizeof(T), 0, N * sizeof(T), M, stream));
    return;
  }
  // Row by row, so the padding between rows stays untouched; a degenerate case, not a hot path.
  const int n = static_cast<int>(N);
  for (int64_t i = 0; i < M; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      check_cublas(cublasSscal(handle, n, &beta, C + i * ldc, 1), "cublasSscal");
    } else {
      check_cublas(cublasDscal(handle, n, &beta, C + i * ldc, 1), "cublasDscal");
    }
  }
}

cublasOperation_t cublas_op(Trans t) { return t == Trans::kNo ? CUBLAS_OP_N : CUBLAS_OP_T; }

}  // namespace

void check_cublas(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(call) + " failed: " + cublasGetStatusName(status) + ": " +
                           cublasGetStatusString(status));
}

CublasHandle::CublasHandle(cudaStream_t stream) {
  check_cublas(cublasCreate(&handle_), "cublasCreate");
  try {
    check_cublas(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    set_stream(stream);
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

CublasHandle::~CublasHandle() {
  if (handle_) cublasDestroy(handle_);
}

void CublasHandle::set_stream(cudaStream_t stream) {
  check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
}

template <typename T>
void gemm(cublasHandle_t handle, Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K,
          T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_gemm_args("cuda gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc, "cuBLAS");
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(handle, M, N, beta, C, ldc);
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  if constexpr (std::is_same_v<T, float>) {
    check_cublas(cublasSgemm(handle, cublas_op(trans_b), cublas_op(trans_a), m, n, k, &alpha, B,
                             static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C,
                             static_cast<int>(ldc)),
                 "cublasSgemm");
  } else {
    static_assert(std::is_same_v<T, double>, "cuda gemm is instantiated for float and double");
    check_cublas(cublasDgemm(handle, cublas_op(trans_b), cublas_op(trans_a), m, n, k, &alpha, B,
                             static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C,
                             static_cast<int>(ldc)),
                 "cublasDgemm");
  }
}

template void gemm<float>(cublasHandle_t, Trans, Trans, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm<double>(cublasHandle_t, Trans, Trans, int64_t, int64_t, int64_t, double,
                           const double*, int64_t, const double*, int64_t, double, double*,
                           int64_t);

}  // namespace tessera::kernels::cuda
