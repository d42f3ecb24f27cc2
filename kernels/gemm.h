// GEMM: the only path to matrix products. fp32 goes to the selected backend (oneDNN's
// dnnl_sgemm by default: measured fastest on our CPUs, see bench/gemm_bench); fp64 (used by
// gradient tests) always goes to CBLAS. Never hand-roll a matmul loop in the hot path.
//
// Thread-safety: gemm() is safe to call from several threads; set_gemm_backend() is not.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::kernels {

enum class Trans : uint8_t { kNo, kYes };

enum class GemmBackend : uint8_t {
  kOneDnn,  // dnnl_sgemm (row-major); picks AVX-512 by itself
  kCblas,   // cblas_sgemm from the linked BLAS (OpenBLAS)
};

// Row-major: C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C.
// lda/ldb/ldc are row strides in elements of the matrices as stored.
template <typename T>
void gemm(Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The argument checks of every gemm (this one and kernels::cuda::gemm): sizes >= 0, each row
// stride at least its row width (and >= 1), every size and stride within the 32-bit
// `interface`. Throws std::invalid_argument "<op>: ..." naming the bad value.
void check_gemm_args(const char* op, Trans trans_a, Trans trans_b, int64_t M, int64_t N,
                     int64_t K, int64_t lda, int64_t ldb, int64_t ldc, const char* interface);

// Default: kOneDnn, unless the environment variable TESSERA_GEMM is "cblas" or "onednn".
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend backend);
const char* gemm_backend_name(GemmBackend backend);
// Parses "onednn" / "cblas"; throws std::invalid_argument naming the value otherwise.
GemmBackend parse_gemm_backend(const std::string& name);

// Threads used by BLAS/oneDNN and by our own CPU loops (OpenMP). One MPI rank per core uses 1.
void set_cpu_threads(int n);
int cpu_threads();

}  // namespace tessera::kernels
