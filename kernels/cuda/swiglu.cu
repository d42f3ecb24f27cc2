// SwiGLU kernels: one thread per element, calling kernels/math/swiglu.h. See launch.cuh.
#include "kernels/cuda/swiglu.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/swiglu.h"

namespace tessera::kernels::cuda {

namespace {

void check_ld(const char* op, int64_t ld_ab, int64_t F) {
  if (ld_ab < F) {
    throw std::invalid_argument(std::string(op) + ": row stride ld_ab=" + std::to_string(ld_ab) +
                                " < F=" + std::to_string(F));
  }
}

template <typename T>
__global__ void swiglu_forward_kernel(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N,
                                      int64_t F) {
  const int64_t i = detail::thread_index();
  if (i >= N * F) return;
  const int64_t o = (i / F) * ld_ab + i % F;
  h[i] = math::swiglu_forward_elem(a[o], b[o]);
}

template <typename T>
__global__ void swiglu_backward_kernel(T* da, T* db, const T* dh, const T* a, const T* b,
                                       int64_t ld_ab, int64_t N, int64_t F) {
  const int64_t i = detail::thread_index();
  if (i >= N * F) return;
  const int64_t o = (i / F) * ld_ab + i % F;
  math::swiglu_backward_elem(da + o, db + o, dh[i], a[o], b[o]);
}

}  // namespace

template <typename T>
void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N, int64_t F,
                    cudaStream_t stream) {
  check_ld("cuda swiglu_forward", ld_ab, F);
  if (N <= 0 || F <= 0) return;
  swiglu_forward_kernel<<<detail::blocks_for(N * F, "swiglu_forward"), detail::kThreadsPerBlock,
                          0, stream>>>(h, a, b, ld_ab, N, F);
  check_launch("swiglu_forward_kernel");
}

template <typename T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab, int64_t N,
                     int64_t F, cudaStream_t stream) {
  check_ld("cuda swiglu_backward", ld_ab, F);
  if (N <= 0 || F <= 0) return;
  swiglu_backward_kernel<<<detail::blocks_for(N * F, "swiglu_backward"),
                           detail::kThreadsPerBlock, 0, stream>>>(da, db, dh, a, b, ld_ab, N, F);
  check_launch("swiglu_backward_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t,         \
                                  cudaStream_t);                                             \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                   int64_t, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
