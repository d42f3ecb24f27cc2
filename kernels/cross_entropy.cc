#include "kernels/cross_entropy.h"

#include <stdexcept>
#include <string>

#include <cmath>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/math/cross_entropy.h"

namespace tessera::kernels {

namespace {
void check_targets(const int32_t* targets, int64_t N, int64_t V, const char* op) {
  if (V < 1) throw std::invalid_argument(std::string(op) + ": vocabulary size must be >= 1");
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0 || targets[n] >= V) {
      throw std::out_of_range(std::string(op) + ": target " + std::to_string(targets[n]) +
                              " at row " + std::to_string(n) + " is outside [0, " +
                              std::to_string(V) + ")");
    }
  }
}
// math/cross_entropy.h's rows in float, vectorised with exp_f32 (kernels/cpu_simd.h); the sum
// of exponentials by cpu::lane_sum.
TESSERA_CPU_CLONES void cross_entropy_forward_row_f32(float* loss, float* lse,
                                                      const float* logits, int32_t target,
                                                      int64_t V) {
  float mx = logits[0];
#pragma omp simd reduction(max : mx)
  for (int64_t v = 0; v < V; ++v) mx = logits[v] > mx ? logits[v] : mx;
  const float sum =
      cpu::lane_sum<float>(V, [&](int64_t v) { return cpu::exp_f32(logits[v] - mx); });
  const float l = mx + std::log(sum);
  *lse = l;
  *loss = l - logits[target];
}

TESSERA_CPU_CLONES void cross_entropy_backward_row_f32(float* dlogits, const float* logits,
                                                       float lse, int32_t target, int64_t V,
                                                       float scale) {
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) {
    const float p = cpu::exp_f32(logits[v] - lse);
    dlogits[v] = scale * (v == target ? p - 1.0f : p);
  }
}

}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V) {
  check_targets(targets, N, V, "cross_entropy_forward");
#pragma omp parallel for if (N * V >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      cross_entropy_forward_row_f32(losses + n, lse + n, logits + n * V, targets[n], V);
    } else {
      math::cross_entropy_forward_row(losses + n, lse + n, logits + n * V, targets[n], V);
    }
  }
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            int64_t N, int64_t V, T scale) {
  check_targets(targets, N, V, "cross_entropy_backward");
#pragma omp parallel for if (N * V >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      cross_entropy_backward_row_f32(dlogits + n * V, logits + n * V, lse[n], targets[n], V,
                                     scale);
    } else {
      math::cross_entropy_backward_row(dlogits + n * V, logits + n * V, lse[n], targets[n], V,
                                       scale);
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void cross_entropy_forward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t); \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, int64_t,    \
                                          int64_t, T);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
