#include "kernels/cross_entropy.h"

#include <stdexcept>
#include <string>

#include "kernels/cpu_loop.h"
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
}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V) {
  check_targets(targets, N, V, "cross_entropy_forward");
#pragma omp parallel for if (N * V >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::cross_entropy_forward_row(losses + n, lse + n, logits + n * V, targets[n], V);
  }
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            int64_t N, int64_t V, T scale) {
  check_targets(targets, N, V, "cross_entropy_backward");
#pragma omp parallel for if (N * V >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::cross_entropy_backward_row(dlogits + n * V, logits + n * V, lse[n], targets[n], V,
                                     scale);
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
