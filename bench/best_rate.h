// Rates for the benchmarks: the best of several timed batches (a batch catching the clock ramping
// or a neighbour's burst reads low; the best is the machine's), and the SGEMM peak that
// throughput figures are a fraction of, measured in the same process.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/gemm.h"

namespace tessera::bench {

// GFLOP/s of `call` (flops_per_call each): one warm-up call (first-touch pages, oneDNN's JIT),
// then the best of `batches` batches, each calling for at least min_s seconds.
inline double best_gflops(const std::function<void()>& call, double flops_per_call, double min_s,
                          int batches) {
  using Clock = std::chrono::steady_clock;
  call();
  double best = 0;
  for (int batch = 0; batch < batches; ++batch) {
    int calls = 0;
    double s = 0;
    const auto t0 = Clock::now();
    do {
      call();
      ++calls;
      s = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (s < min_s);
    best = std::max(best, flops_per_call * calls / s / 1e9);
  }
  return best;
}

// The SGEMM peak: 1024^3 GEMMs (x W and x W^T) through kernels::gemm on each library, the best
// of 4 batches of min_s each (five single 15 ms calls under-read it by up to a quarter; one
// library or layout alone can under-read it too, flattering fractions of it). Restores the
// selected GEMM backend.
inline double measured_sgemm_peak(double min_s) {
  using kernels::GemmBackend;
  using kernels::Trans;
  const int64_t n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);
  const GemmBackend selected = kernels::gemm_backend();
  double peak = 0;
  for (GemmBackend library : {GemmBackend::kOneDnn, GemmBackend::kCblas}) {
    kernels::set_gemm_backend(library);
    for (Trans trans_b : {Trans::kNo, Trans::kYes}) {
      const auto call = [&] {
        kernels::gemm<float>(Trans::kNo, trans_b, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                             c.data(), n);
      };
      peak = std::max(peak, best_gflops(call, 2.0 * n * n * n, min_s, 4));
    }
  }
  kernels::set_gemm_backend(selected);
  return peak;
}

}  // namespace tessera::bench
