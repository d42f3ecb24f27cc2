// GEMM: the only path to matrix products. fp32 goes to the selected library (by default the
// faster one for the operand layout on this CPU, see GemmBackend::kAuto and bench/gemm_bench);
// fp64 (used by gradient tests) always goes to CBLAS. Never hand-roll a matmul loop in the hot
// path, except inside a fused kernel no library offers (the CPU's flash attention,
// kernels/attention.cc, keeps its score tiles in cache between the products and the softmax).
//
// Thread-safety: gemm() is safe to call from several threads; set_gemm_backend() is not.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::kernels {

enum class Trans : uint8_t { kNo, kYes };

enum class GemmBackend : uint8_t {
  // oneDNN, except products with a transposed A (the weight gradients dy^T x) where oneDNN has
  // no AVX-512 kernels: its AVX2 sgemm packs a transposed A slowly (bench/gemm_bench on an AMD
  // EPYC Zen 3, 1 thread: 33-62 GFLOP/s vs OpenBLAS's 69-78 at the bench models' shapes), while
  // with AVX-512 oneDNN is the faster library for every layout. With several threads only an
  // OpenMP build of OpenBLAS qualifies: a pthread build's own spinning workers compete with the
  // OpenMP ones (2 threads: steps 1.5x slower). Deterministic on a given machine and build.
  kAuto,
  kOneDnn,  // dnnl_sgemm (row-major) for every layout; picks AVX-512 by itself
  kCblas,   // cblas_sgemm from the linked BLAS (OpenBLAS) for every layout
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

// Default: kAuto, unless the environment variable TESSERA_GEMM is "onednn" or "cblas".
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend backend);
const char* gemm_backend_name(GemmBackend backend);
// Parses "auto" / "onednn" / "cblas"; throws std::invalid_argument naming the value otherwise.
GemmBackend parse_gemm_backend(const std::string& name);

// The library (kOneDnn or kCblas) a product with this A layout runs on under `backend`, given
// whether OpenBLAS beats oneDNN on transposed-A products here (kAuto's rule, above).
GemmBackend resolve_gemm_backend(GemmBackend backend, Trans trans_a,
                                 bool cblas_wins_transposed_a);
// That condition on this machine and build, at the current thread count.
bool cblas_wins_transposed_a();
// What gemm_backend() means here, for logs: "onednn", "cblas", "auto (onednn)" or
// "auto (onednn; cblas for transposed A)".
std::string gemm_backend_description();

// Threads used by BLAS/oneDNN and by our own CPU loops (OpenMP). One MPI rank per core uses 1.
void set_cpu_threads(int n);
int cpu_threads();

}  // namespace tessera::kernels
