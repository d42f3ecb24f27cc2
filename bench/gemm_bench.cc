// gemm_bench: single-thread SGEMM throughput of each GEMM backend (auto: what training uses, then
// each library alone) on the shapes that matter (square, and the model's linear layers: forward
// x W^T, backward-input dy W, backward-weight dy^T x), checked as it runs (sampled entries
// against a double-precision dot product).
// The last line, `gemm_peak_gflops=<x> backend=<name>`, is the best measured SGEMM rate; other
// benchmarks parse it as the machine's practical fp32 peak for MFU.
//
// Usage: gemm_bench [--threads N] [--min-seconds S]   (defaults: 1 thread, 0.05 s per batch)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/tensor.h"

namespace {

using tessera::kernels::DType;
using tessera::kernels::GemmBackend;
using tessera::kernels::Tensor;
using tessera::kernels::Trans;

struct Shape {
  const char* name;
  Trans ta, tb;
  int64_t M, N, K;
};

// Model shapes: 2048 tokens (8 x 256), dim 256, FFN hidden 1024.
const Shape kShapes[] = {
    {"square 256", Trans::kNo, Trans::kNo, 256, 256, 256},
    {"square 512", Trans::kNo, Trans::kNo, 512, 512, 512},
    {"square 1024", Trans::kNo, Trans::kNo, 1024, 1024, 1024},
    {"linear fwd  x W^T", Trans::kNo, Trans::kYes, 2048, 1024, 256},
    {"linear bwd  dy W", Trans::kNo, Trans::kNo, 2048, 256, 1024},
    {"linear bwdW dy^T x", Trans::kYes, Trans::kNo, 1024, 256, 2048},
    {"expert bwdW dy^T x", Trans::kYes, Trans::kNo, 256, 256, 512},
    {"attn QK^T T256 hd64", Trans::kNo, Trans::kYes, 256, 256, 64},
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Result {
  double best_gflops = 0, median_gflops = 0, max_rel_err = 0;
  int64_t wrong = 0;
};

Result run(const Shape& s, double min_seconds) {
  // Stored shapes: A is (M,K) or (K,M); B is (K,N) or (N,K); rows unpadded.
  const int64_t lda = s.ta == Trans::kNo ? s.K : s.M;
  const int64_t ldb = s.tb == Trans::kNo ? s.N : s.K;
  Tensor A = Tensor::empty({s.M * s.K}, DType::kF32);
  Tensor B = Tensor::empty({s.K * s.N}, DType::kF32);
  Tensor C = Tensor::zeros({s.M * s.N}, DType::kF32);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < A.numel(); ++i) A.data<float>()[i] = dist(rng);
  for (int64_t i = 0; i < B.numel(); ++i) B.data<float>()[i] = dist(rng);
  auto call = [&] {
    tessera::kernels::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data<float>(), lda,
                                  B.data<float>(), ldb, 0.0f, C.data<float>(), s.N);
  };

  call();  // warm-up (and the result checked below)
  Result r;
  const float* a = A.data<float>();
  const float* b = B.data<float>();
  std::uniform_int_distribution<int64_t> pick_m(0, s.M - 1), pick_n(0, s.N - 1);
  for (int sample = 0; sample < 256; ++sample) {
    const int64_t i = pick_m(rng), j = pick_n(rng);
    double ref = 0, mag = 0;
    for (int64_t k = 0; k < s.K; ++k) {
      const double x = s.ta == Trans::kNo ? a[i * lda + k] : a[k * lda + i];
      const double y = s.tb == Trans::kNo ? b[k * ldb + j] : b[j * ldb + k];
      ref += x * y;
      mag += std::abs(x * y);
    }
    const double err = std::abs(C.data<float>()[i * s.N + j] - ref) / mag;
    r.max_rel_err = std::max(r.max_rel_err, err);
    if (err > 1e-5) ++r.wrong;  // fp32 accumulation error is ~K * 6e-8 / sqrt(K) of |x||y|
  }

  // Calibrate a batch to last >= min_seconds, then time 5 batches.
  int64_t iters = 1;
  for (;;) {
    const double t0 = now_seconds();
    for (int64_t i = 0; i < iters; ++i) call();
    if (now_seconds() - t0 >= min_seconds) break;
    iters *= 2;
  }
  const double flops = 2.0 * s.M * s.N * s.K * iters;
  std::vector<double> rates;
  for (int batch = 0; batch < 5; ++batch) {
    const double t0 = now_seconds();
    for (int64_t i = 0; i < iters; ++i) call();
    rates.push_back(flops / (now_seconds() - t0) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  r.best_gflops = rates.back();
  r.median_gflops = rates[rates.size() / 2];
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  double min_seconds = 0.05;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (arg == "--min-seconds" && i + 1 < argc) {
      min_seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "gemm_bench: unknown argument '%s'\n"
                           "usage: gemm_bench [--threads N] [--min-seconds S]\n", argv[i]);
      return 2;
    }
  }
  try {
    tessera::kernels::set_cpu_threads(threads);
    std::printf("# SGEMM, %d thread(s), GFLOP/s best (median) of 5 batches; err = max sampled "
                "|C - C_ref| / sum|a b|\n", threads);
    std::printf("%-22s %5s %5s %5s  %-7s %9s %9s %9s %5s\n", "shape", "M", "N", "K", "backend",
                "best", "median", "err", "wrong");
    double peak = 0;
    GemmBackend peak_backend = GemmBackend::kOneDnn;
    int64_t total_wrong = 0;
    for (const Shape& s : kShapes) {
      for (GemmBackend backend :
           {GemmBackend::kAuto, GemmBackend::kOneDnn, GemmBackend::kCblas}) {
        tessera::kernels::set_gemm_backend(backend);
        const Result r = run(s, min_seconds);
        std::printf("%-22s %5ld %5ld %5ld  %-7s %9.1f %9.1f %9.1e %5ld\n", s.name, (long)s.M,
                    (long)s.N, (long)s.K, tessera::kernels::gemm_backend_name(backend),
                    r.best_gflops, r.median_gflops, r.max_rel_err, (long)r.wrong);
        total_wrong += r.wrong;
        if (r.best_gflops > peak) {
          peak = r.best_gflops;
          peak_backend = backend;
        }
      }
    }
    std::printf("# measured SGEMM peak (best of all shapes and backends above)\n");
    std::printf("gemm_peak_gflops=%.1f backend=%s\n", peak,
                tessera::kernels::gemm_backend_name(peak_backend));
    return total_wrong == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemm_bench: %s\n", e.what());
    return 1;
  }
}
