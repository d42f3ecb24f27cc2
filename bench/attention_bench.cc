// attention_bench: the CPU causal attention kernels (kernels/attention.h) alone, in float, on the
// benchmark recipes' shapes, with the SGEMM rate of the same process beside them. FLOPs are the
// causal half that train_throughput counts (q.k and p.v over the lower triangle, backward twice).
//
// Usage: attention_bench [--threads N] [--min-seconds S]   (defaults: 1 thread, 0.3 s per figure)
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/best_rate.h"
#include "kernels/attention.h"
#include "kernels/host_memory.h"

namespace {

struct Shape {
  const char* name;
  int64_t B, T, H, hd;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  double min_s = 0.3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--threads") {
      threads = std::atoi(argv[++i]);
    } else if (i + 1 < argc && a == "--min-seconds") {
      min_s = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: attention_bench [--threads N] [--min-seconds S]\n");
      return 2;
    }
  }
  omp_set_num_threads(threads);
  namespace k = tessera::kernels;
  k::keep_freed_host_memory();  // as the trainer runs: oneDNN's per-call buffers stay mapped

  const double peak = tessera::bench::measured_sgemm_peak(min_s);
  std::printf("threads %d   SGEMM 1024^3 %.1f GFLOP/s\n", threads, peak);
  std::printf("%-22s %10s %10s %8s %8s\n", "shape (B,T,H,hd)", "fwd GF/s", "bwd GF/s", "fwd %pk",
              "bwd %pk");

  const Shape shapes[] = {{"bench-moe 8,256,8,32", 8, 256, 8, 32},
                          {"bench-moe-wide 8,256,16,64", 8, 256, 16, 64},
                          {"long 1,1024,4,64", 1, 1024, 4, 64}};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Shape& s : shapes) {
    const int64_t D = s.H * s.hd, ld = 3 * D, rows = s.B * s.T;
    std::vector<float> qkv(rows * ld), out(rows * D), lse(s.B * s.H * s.T);
    std::vector<float> dout(rows * D), dqkv(rows * ld), scratch(s.B * s.H * s.T);
    for (float& x : qkv) x = normal(rng);
    for (float& x : dout) x = normal(rng);
    const float* q = qkv.data();
    const double flops = s.B * s.H * 2.0 * 2.0 * s.hd * s.T * (s.T + 1) / 2;
    const double fwd = tessera::bench::best_gflops(
        [&] {
          k::attention_forward(out.data(), D, lse.data(), q, q + D, q + 2 * D, ld, s.B, s.T, s.H,
                               s.hd);
        },
        flops, min_s, 3);
    const double bwd = tessera::bench::best_gflops(
        [&] {
          k::attention_backward(dqkv.data(), dqkv.data() + D, dqkv.data() + 2 * D, ld,
                                scratch.data(), dout.data(), D, lse.data(), q, q + D, q + 2 * D,
                                ld, s.B, s.T, s.H, s.hd);
        },
        2 * flops, min_s, 3);
    std::printf("%-26s %6.1f %10.1f %7.0f%% %7.0f%%\n", s.name, fwd, bwd, 100 * fwd / peak,
                100 * bwd / peak);
  }
  return 0;
}
