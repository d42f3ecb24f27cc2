// GEMM dispatch: fp32 -> oneDNN dnnl_sgemm or CBLAS (OpenBLAS) sgemm by operand layout and CPU,
// fp64 -> CBLAS dgemm.
// Both take row-major layouts directly, so no transposition trick is needed.
#include "kernels/gemm.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_parallel(void);  // 0 sequential, 1 pthreads, 2 OpenMP

namespace tessera::kernels {

namespace {

GemmBackend backend_from_env() {
  const char* env = std::getenv("TESSERA_GEMM");
  if (!env || !*env) return GemmBackend::kAuto;
  try {
    return parse_gemm_backend(env);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("environment variable TESSERA_GEMM: ") + e.what());
  }
}

std::atomic<GemmBackend>& backend_slot() {
  static std::atomic<GemmBackend> slot{backend_from_env()};
  return slot;
}

// C = beta * C (BLAS semantics: beta == 0 overwrites, even NaN).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) row[j] = beta == T(0) ? T(0) : beta * row[j];
  }
}

CBLAS_TRANSPOSE cblas_trans(Trans t) { return t == Trans::kNo ? CblasNoTrans : CblasTrans; }

// oneDNN's sgemm divides some shapes poorly between threads. Measured at 2 threads (Zen 5,
// the model's fp32 GEMMs, GFLOP/s): x W^T with M=2048 N=256 K=1024 246 by oneDNN's own split,
// 347 with the rows split by hand; M=2048 N=512 K=256 340 -> 383; every other shape of the
// model equal within noise (+-3%). So, where each thread gets at least kMinRowsPerThread rows
// of C, each thread runs oneDNN on its own block of rows (single-threaded: oneDNN does not
// nest inside a parallel region); smaller M is left to oneDNN, as is a call from inside a
// parallel region (the grouped maps run one expert's GEMM per thread).
constexpr int64_t kMinRowsPerThread = 256;

int64_t gemm_row_blocks(int64_t M) {
  if (omp_in_parallel()) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), M / kMinRowsPerThread));
}

dnnl_status_t onednn_sgemm_by_rows(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                                   float alpha, const float* A, int64_t lda, const float* B,
                                   int64_t ldb, float beta, float* C, int64_t ldc) {
  const char a = ta == Trans::kNo ? 'N' : 'T', b = tb == Trans::kNo ? 'N' : 'T';
  const int64_t blocks = gemm_row_blocks(M);
  if (blocks == 1) return dnnl_sgemm(a, b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  int failed = dnnl_success;  // the largest status of any block (dnnl_success is 0)
#pragma omp parallel for num_threads(static_cast<int>(blocks)) reduction(max : failed)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t r0 = M * blk / blocks, r1 = M * (blk + 1) / blocks;
    // Rows r0.. of op(A): rows of A, or columns of the stored A^T.
    const float* A_rows = ta == Trans::kNo ? A + r0 * lda : A + r0;
    failed = std::max<int>(failed, dnnl_sgemm(a, b, r1 - r0, N, K, alpha, A_rows, lda, B, ldb,
                                              beta, C + r0 * ldc, ldc));
  }
  return static_cast<dnnl_status_t>(failed);
}

}  // namespace

const char* gemm_backend_name(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::kAuto: return "auto";
    case GemmBackend::kOneDnn: return "onednn";
    case GemmBackend::kCblas: return "cblas";
  }
  return "unknown";
}

GemmBackend parse_gemm_backend(const std::string& name) {
  if (name == "auto") return GemmBackend::kAuto;
  if (name == "onednn") return GemmBackend::kOneDnn;
  if (name == "cblas") return GemmBackend::kCblas;
  throw std::invalid_argument("unknown GEMM backend '" + name +
                              "' (expected auto, onednn or cblas)");
}

GemmBackend resolve_gemm_backend(GemmBackend backend, Trans trans_a,
                                 bool cblas_wins_transposed_a) {
  if (backend != GemmBackend::kAuto) return backend;
  return trans_a == Trans::kYes && cblas_wins_transposed_a ? GemmBackend::kCblas
                                                           : GemmBackend::kOneDnn;
}

bool cblas_wins_transposed_a() {
  static const bool onednn_avx512 = (static_cast<unsigned>(dnnl_get_effective_cpu_isa()) &
                                     dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
  static const bool openblas_on_openmp = openblas_get_parallel() == 2;
  return !onednn_avx512 && (openblas_on_openmp || omp_get_max_threads() == 1);
}

std::string gemm_backend_description() {
  const GemmBackend backend = gemm_backend();
  if (backend != GemmBackend::kAuto) return gemm_backend_name(backend);
  return cblas_wins_transposed_a() ? "auto (onednn; cblas for transposed A)" : "auto (onednn)";
}

// Row-major storage: op(A) is (M,K), so A is stored (M,K) or, transposed, (K,M).
void check_gemm_args(const char* op, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                     int64_t lda, int64_t ldb, int64_t ldc, const char* interface) {
  if (M < 0 || N < 0 || K < 0) {
    throw std::invalid_argument(std::string(op) + ": negative size M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K));
  }
  const int64_t a_cols = ta == Trans::kNo ? K : M;
  const int64_t b_cols = tb == Trans::kNo ? N : K;
  auto check_ld = [op](const char* name, int64_t ld, int64_t cols) {
    if (ld < (cols > 1 ? cols : 1)) {
      throw std::invalid_argument(std::string(op) + ": " + name + "=" + std::to_string(ld) +
                                  " is smaller than the row width " + std::to_string(cols));
    }
  };
  check_ld("lda", lda, a_cols);
  check_ld("ldb", ldb, b_cols);
  check_ld("ldc", ldc, N);
  for (int64_t v : {M, N, K, lda, ldb, ldc}) {
    if (v > INT_MAX) {
      throw std::invalid_argument(std::string(op) + ": dimension " + std::to_string(v) +
                                  " exceeds the 32-bit " + interface + " interface");
    }
  }
}

GemmBackend gemm_backend() { return backend_slot().load(std::memory_order_relaxed); }

void set_gemm_backend(GemmBackend backend) {
  backend_slot().store(backend, std::memory_order_relaxed);
}

template <typename T>
void gemm(Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_gemm_args("gemm", trans_a, trans_b, M, N, K, lda, ldb, ldc, "BLAS");
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if constexpr (std::is_same_v<T, float>) {
    if (resolve_gemm_backend(gemm_backend(), trans_a, cblas_wins_transposed_a()) ==
        GemmBackend::kOneDnn) {
      const dnnl_status_t status =
          onednn_sgemm_by_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      if (status != dnnl_success) {
        throw std::runtime_error("gemm: dnnl_sgemm failed with status " +
                                 std::to_string(static_cast<int>(status)) + " for M=" +
                                 std::to_string(M) + " N=" + std::to_string(N) +
                                 " K=" + std::to_string(K));
      }
      return;
    }
    cblas_sgemm(CblasRowMajor, cblas_trans(trans_a), cblas_trans(trans_b), m, n, k, alpha, A,
                static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
  } else {
    static_assert(std::is_same_v<T, double>, "gemm is instantiated for float and double");
    cblas_dgemm(CblasRowMajor, cblas_trans(trans_a), cblas_trans(trans_b), m, n, k, alpha, A,
                static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
  }
}

template void gemm<float>(Trans, Trans, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Trans, Trans, int64_t, int64_t, int64_t, double, const double*,
                           int64_t, const double*, int64_t, double, double*, int64_t);

void set_cpu_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_cpu_threads: thread count " + std::to_string(n) +
                                         " must be >= 1");
  omp_set_num_threads(n);  // our loops and oneDNN (OpenMP runtime)
  openblas_set_num_threads(n);
}

int cpu_threads() { return omp_get_max_threads(); }

}  // namespace tessera::kernels
