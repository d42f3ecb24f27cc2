// Row-major GEMM on CUDA through cuBLAS, with exactly the semantics of kernels::gemm
// (kernels/gemm.h): C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C, row strides
// lda/ldb/ldc in elements, beta == 0 overwrites C (even NaN), same argument checks.
// Runs on the handle's stream; asynchronous like any launch.
//
// Thread-safety: a cuBLAS handle must not be used by two threads at once; use one
// CublasHandle per thread (or per stream).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/gemm.h"

namespace tessera::kernels::cuda {

// Throws std::runtime_error "<call> failed: <cublasGetStatusName>: <cublasGetStatusString>"
// unless status == CUBLAS_STATUS_SUCCESS.
void check_cublas(cublasStatus_t status, const char* call);

// Owns a cuBLAS handle bound to a stream. fp32 math stays fp32 (CUBLAS_DEFAULT_MATH, no TF32),
// so results are comparable with the CPU gemm; reduced precision will be an explicit choice.
class CublasHandle {
 public:
  // REQUIRES: a CUDA device (throws std::runtime_error naming the failed call otherwise).
  explicit CublasHandle(cudaStream_t stream = nullptr);
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  cublasHandle_t get() const { return handle_; }
  void set_stream(cudaStream_t stream);

 private:
  cublasHandle_t handle_ = nullptr;
};

// Arguments are checked (and rejected with std::invalid_argument, as kernels::gemm does)
// before the handle is used. fp32 -> cublasSgemm, fp64 -> cublasDgemm.
// REQUIRES: the handle's pointer mode is CUBLAS_POINTER_MODE_HOST (the default): alpha and
// beta are host values.
template <typename T>
void gemm(cublasHandle_t handle, Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K,
          T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace tessera::kernels::cuda
