// Permute/combine kernels: one thread per row (a permuted row, or a token's k rows), calling
// kernels/math/permute.h. See launch.cuh. pos_of_slot is a bijection, so the token threads of
// the backward combine write disjoint dyp rows: no races.
#include "kernels/cuda/permute.h"

#include "kernels/cuda/launch.cuh"
#include "kernels/math/permute.h"

namespace tessera::kernels::cuda {

namespace {

// True when the token's k positions all lie in [0, rows).
__device__ __forceinline__ bool positions_ok(const int32_t* pos_row, int64_t k, int64_t rows) {
  for (int64_t j = 0; j < k; ++j) {
    if (pos_row[j] < 0 || pos_row[j] >= rows) return false;
  }
  return true;
}

template <typename T>
__global__ void permute_kernel(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N,
                               int64_t k, int64_t C) {
  const int64_t p = detail::thread_index();
  if (p >= N * k) return;
  const int64_t slot = slot_of_pos[p];
  if (slot < 0 || slot >= N * k) return detail::fill_nan(xp + p * C, C);
  math::copy_row(xp + p * C, x + (slot / k) * C, C);
}

template <typename T>
__global__ void permute_backward_kernel(T* dx, const T* dxp, const int32_t* pos_of_slot,
                                        int64_t N, int64_t k, int64_t C, bool accumulate) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  if (!positions_ok(pos_of_slot + n * k, k, N * k)) return detail::fill_nan(dx + n * C, C);
  math::permute_backward_row(dx + n * C, dxp, pos_of_slot + n * k, k, C, accumulate);
}

template <typename T>
__global__ void combine_kernel(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                               int64_t N, int64_t k, int64_t C, bool accumulate) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  if (!positions_ok(pos_of_slot + n * k, k, N * k)) return detail::fill_nan(y + n * C, C);
  math::combine_row(y + n * C, yp, gates + n * k, pos_of_slot + n * k, k, C, accumulate);
}

template <typename T>
__global__ void combine_backward_kernel(T* dyp, T* dgates, const T* dy, const T* yp,
                                        const T* gates, const int32_t* pos_of_slot, int64_t N,
                                        int64_t k, int64_t C) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  if (!positions_ok(pos_of_slot + n * k, k, N * k)) return detail::fill_nan(dgates + n * k, k);
  math::combine_backward_row(dyp, dgates + n * k, dy + n * C, yp, gates + n * k,
                             pos_of_slot + n * k, k, C);
}

}  // namespace

template <typename T>
void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k, int64_t C,
                 cudaStream_t stream) {
  if (N * k <= 0) return;
  permute_kernel<<<detail::blocks_for(N * k, "moe_permute"), detail::kThreadsPerBlock, 0,
                   stream>>>(xp, x, slot_of_pos, N, k, C);
  check_launch("permute_kernel");
}

template <typename T>
void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N, int64_t k,
                          int64_t C, bool accumulate, cudaStream_t stream) {
  if (N <= 0) return;
  permute_backward_kernel<<<detail::blocks_for(N, "moe_permute_backward"),
                            detail::kThreadsPerBlock, 0, stream>>>(dx, dxp, pos_of_slot, N, k, C,
                                                                   accumulate);
  check_launch("permute_backward_kernel");
}

template <typename T>
void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                           int64_t N, int64_t k, int64_t C, bool accumulate,
                           cudaStream_t stream) {
  if (N <= 0) return;
  combine_kernel<<<detail::blocks_for(N, "moe_unpermute_combine"), detail::kThreadsPerBlock, 0,
                   stream>>>(y, yp, gates, pos_of_slot, N, k, C, accumulate);
  check_launch("combine_kernel");
}

template <typename T>
void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp, const T* gates,
                                    const int32_t* pos_of_slot, int64_t N, int64_t k, int64_t C,
                                    cudaStream_t stream) {
  if (N <= 0) return;
  combine_backward_kernel<<<detail::blocks_for(N, "moe_unpermute_combine_backward"),
                            detail::kThreadsPerBlock, 0, stream>>>(dyp, dgates, dy, yp, gates,
                                                                   pos_of_slot, N, k, C);
  check_launch("combine_backward_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                  \
  template void moe_permute<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t,        \
                               cudaStream_t);                                                  \
  template void moe_permute_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t,        \
                                        int64_t, bool, cudaStream_t);                          \
  template void moe_unpermute_combine<T>(T*, const T*, const T*, const int32_t*, int64_t,      \
                                         int64_t, int64_t, bool, cudaStream_t);                \
  template void moe_unpermute_combine_backward<T>(T*, T*, const T*, const T*, const T*,        \
                                                  const int32_t*, int64_t, int64_t, int64_t,   \
                                                  cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda
