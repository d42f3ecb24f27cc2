// AdamW kernel: one thread per element, calling kernels/math/adamw.h. See launch.cuh.
#include "kernels/cuda/adamw.h"

#include "kernels/cuda/launch.cuh"
#include "kernels/math/adamw.h"
#include "kernels/math/low_precision.h"

namespace tessera::kernels::cuda {

namespace {

template <typename T>
__global__ void adamw_kernel(T* param, const T* grad, T* m, T* v, int64_t n,
                             math::AdamWCoeffs<T> k) {
  const int64_t i = detail::thread_index();
  if (i >= n) return;
  math::adamw_elem(param + i, grad[i], m + i, v + i, k);
}

__global__ void adamw_bf16_moments_kernel(float* param, const float* grad, uint16_t* m,
                                          uint16_t* v, int64_t n, math::AdamWCoeffs<float> k) {
  const int64_t i = detail::thread_index();
  if (i >= n) return;
  float mi = math::bf16_to_float(m[i]), vi = math::bf16_to_float(v[i]);
  math::adamw_elem(param + i, grad[i], &mi, &vi, k);
  m[i] = math::float_to_bf16(mi);
  v[i] = math::float_to_bf16(vi);
}

}  // namespace

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp, bool decay,
                  T grad_scale, cudaStream_t stream) {
  const math::AdamWCoeffs<T> k = math::adamw_coeffs(hp, decay, grad_scale, "cuda adamw_update");
  if (n <= 0) return;
  adamw_kernel<<<detail::blocks_for(n, "adamw_update"), detail::kThreadsPerBlock, 0, stream>>>(
      param, grad, m, v, n, k);
  check_launch("adamw_kernel");
}

void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& hp, bool decay, float grad_scale,
                               cudaStream_t stream) {
  const math::AdamWCoeffs<float> k =
      math::adamw_coeffs(hp, decay, grad_scale, "cuda adamw_update_bf16_moments");
  if (n <= 0) return;
  adamw_bf16_moments_kernel<<<detail::blocks_for(n, "adamw_update_bf16_moments"),
                              detail::kThreadsPerBlock, 0, stream>>>(param, grad, m, v, n, k);
  check_launch("adamw_bf16_moments_kernel");
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWStep&, bool, float, cudaStream_t);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWStep&, bool, double, cudaStream_t);

}  // namespace tessera::kernels::cuda
