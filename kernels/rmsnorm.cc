#include "kernels/rmsnorm.h"

#include "kernels/cpu_loop.h"
#include "kernels/math/rmsnorm.h"

namespace tessera::kernels {

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C, T eps) {
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::rmsnorm_forward_row(y + n * C, rstd + n, x + n * C, w, C, eps);
  }
}

template <typename T>
void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                            int64_t C, bool accumulate) {
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::rmsnorm_backward_input_row(dx + n * C, dy + n * C, x + n * C, w, rstd[n], C,
                                     accumulate);
  }
}

template <typename T>
void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                             int64_t C) {
  const int64_t n_blocks = (C + math::kColumnBlock - 1) / math::kColumnBlock;
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t c0 = blk * math::kColumnBlock;
    const int64_t c1 = c0 + math::kColumnBlock < C ? c0 + math::kColumnBlock : C;
    math::rmsnorm_backward_weight_cols(dw, dy, x, rstd, N, C, c0, c1);
  }
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);         \
  template void rmsnorm_backward_input<T>(T*, const T*, const T*, const T*, const T*, int64_t, \
                                          int64_t, bool);                                     \
  template void rmsnorm_backward_weight<T>(T*, const T*, const T*, const T*, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
