// Cross-entropy kernels: one thread per row of V logits, calling kernels/math/cross_entropy.h.
// A thread per vocabulary row is slow for large V; see launch.cuh for why it is so for now.
#include "kernels/cuda/cross_entropy.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/cross_entropy.h"

namespace tessera::kernels::cuda {

namespace {

void check_vocab(int64_t V, const char* op) {
  if (V < 1) {
    throw std::invalid_argument(std::string(op) + ": vocabulary size " + std::to_string(V) +
                                " must be >= 1");
  }
}

template <typename T>
__global__ void cross_entropy_forward_kernel(T* losses, T* lse, const T* logits,
                                             const int32_t* targets, int64_t N, int64_t V) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  const int32_t target = targets[n];
  if (target < 0 || target >= V) {
    losses[n] = lse[n] = detail::quiet_nan(T());
    return;
  }
  math::cross_entropy_forward_row(losses + n, lse + n, logits + n * V, target, V);
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* logits, const T* lse,
                                              const int32_t* targets, int64_t N, int64_t V,
                                              T scale) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  const int32_t target = targets[n];
  if (target < 0 || target >= V) {
    detail::fill_nan(dlogits + n * V, V);
    return;
  }
  math::cross_entropy_backward_row(dlogits + n * V, logits + n * V, lse[n], target, V, scale);
}

}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int64_t N,
                           int64_t V, cudaStream_t stream) {
  check_vocab(V, "cuda cross_entropy_forward");
  if (N <= 0) return;
  cross_entropy_forward_kernel<<<detail::blocks_for(N, "cross_entropy_forward"),
                                 detail::kThreadsPerBlock, 0, stream>>>(losses, lse, logits,
                                                                        targets, N, V);
  check_launch("cross_entropy_forward_kernel");
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                            int64_t N, int64_t V, T scale, cudaStream_t stream) {
  check_vocab(V, "cuda cross_entropy_backward");
  if (N <= 0) return;
  cross_entropy_backward_kernel<<<detail::blocks_for(N, "cross_entropy_backward"),
                                  detail::kThreadsPerBlock, 0, stream>>>(dlogits, logits, lse,
                                                                         targets, N, V, scale);
  check_launch("cross_entropy_backward_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void cross_entropy_forward<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t,  \
                                         cudaStream_t);                                       \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, int64_t,    \
                                          int64_t, T, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
