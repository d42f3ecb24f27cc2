// RoPE kernel: one thread per (b, t) row, calling kernels/math/rope.h. See launch.cuh.
#include "kernels/cuda/rope.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/rope.h"

namespace tessera::kernels::cuda {

namespace {

template <typename T>
__global__ void rope_kernel(T* x, int64_t ld, const T* cos_table, const T* sin_table,
                            int64_t rows, int64_t T_len, int64_t H, int64_t hd, T sign) {
  const int64_t r = detail::thread_index();
  if (r >= rows) return;
  const int64_t half = hd / 2;
  const int64_t t = r % T_len;
  math::rope_rotate_row(x + r * ld, cos_table + t * half, sin_table + t * half, H, hd, sign);
}

template <typename T>
void rope_apply(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                int64_t T_len, int64_t H, int64_t hd, T sign, cudaStream_t stream) {
  if (hd <= 0 || hd % 2 != 0) {
    throw std::invalid_argument("cuda rope: head_dim " + std::to_string(hd) +
                                " must be even and > 0");
  }
  if (ld < H * hd) {
    throw std::invalid_argument("cuda rope: row stride " + std::to_string(ld) +
                                " < H*hd = " + std::to_string(H * hd));
  }
  const int64_t rows = B * T_len;
  if (rows <= 0) return;
  rope_kernel<<<detail::blocks_for(rows, "rope"), detail::kThreadsPerBlock, 0, stream>>>(
      x, ld, cos_table, sin_table, rows, T_len, H, hd, sign);
  check_launch("rope_kernel");
}

}  // namespace

template <typename T>
void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                  int64_t T_len, int64_t H, int64_t hd, cudaStream_t stream) {
  rope_apply(x, ld, cos_table, sin_table, B, T_len, H, hd, T(1), stream);
}

template <typename T>
void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                   int64_t T_len, int64_t H, int64_t hd, cudaStream_t stream) {
  rope_apply(dx, ld, cos_table, sin_table, B, T_len, H, hd, T(-1), stream);
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void rope_forward<T>(T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t,  \
                                int64_t, cudaStream_t);                                      \
  template void rope_backward<T>(T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t, \
                                 int64_t, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
