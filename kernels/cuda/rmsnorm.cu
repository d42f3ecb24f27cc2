// RMSNorm kernels: one thread per row (forward, backward_input) or per column (weight
// gradient), each calling kernels/math/rmsnorm.h. See launch.cuh for the design.
#include "kernels/cuda/rmsnorm.h"

#include "kernels/cuda/launch.cuh"
#include "kernels/math/rmsnorm.h"

namespace tessera::kernels::cuda {

namespace {

template <typename T>
__global__ void rmsnorm_forward_kernel(T* y, T* rstd, const T* x, const T* w, int64_t N,
                                       int64_t C, T eps) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  math::rmsnorm_forward_row(y + n * C, rstd + n, x + n * C, w, C, eps);
}

template <typename T>
__global__ void rmsnorm_backward_input_kernel(T* dx, const T* dy, const T* x, const T* w,
                                              const T* rstd, int64_t N, int64_t C,
                                              bool accumulate) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  math::rmsnorm_backward_input_row(dx + n * C, dy + n * C, x + n * C, w, rstd[n], C, accumulate);
}

// Column blocks of width 1: neighbouring threads read neighbouring columns (coalesced).
template <typename T>
__global__ void rmsnorm_backward_weight_kernel(T* dw, const T* dy, const T* x, const T* rstd,
                                               int64_t N, int64_t C) {
  const int64_t c = detail::thread_index();
  if (c >= C) return;
  math::rmsnorm_backward_weight_cols(dw, dy, x, rstd, N, C, c, c + 1);
}

}  // namespace

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C, T eps,
                     cudaStream_t stream) {
  if (N <= 0) return;
  rmsnorm_forward_kernel<<<detail::blocks_for(N, "rmsnorm_forward"), detail::kThreadsPerBlock,
                           0, stream>>>(y, rstd, x, w, N, C, eps);
  check_launch("rmsnorm_forward_kernel");
}

template <typename T>
void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                            int64_t C, bool accumulate, cudaStream_t stream) {
  if (N <= 0) return;
  rmsnorm_backward_input_kernel<<<detail::blocks_for(N, "rmsnorm_backward_input"),
                                  detail::kThreadsPerBlock, 0, stream>>>(dx, dy, x, w, rstd, N,
                                                                         C, accumulate);
  check_launch("rmsnorm_backward_input_kernel");
}

template <typename T>
void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N, int64_t C,
                             cudaStream_t stream) {
  if (C <= 0) return;
  rmsnorm_backward_weight_kernel<<<detail::blocks_for(C, "rmsnorm_backward_weight"),
                                   detail::kThreadsPerBlock, 0, stream>>>(dw, dy, x, rstd, N, C);
  check_launch("rmsnorm_backward_weight_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T,          \
                                   cudaStream_t);                                            \
  template void rmsnorm_backward_input<T>(T*, const T*, const T*, const T*, const T*, int64_t, \
                                          int64_t, bool, cudaStream_t);                       \
  template void rmsnorm_backward_weight<T>(T*, const T*, const T*, const T*, int64_t, int64_t, \
                                           cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
