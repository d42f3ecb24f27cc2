// AdamW kernel: one thread per element, calling kernels/math/adamw.h. See launch.cuh.
#include "kernels/cuda/adamw.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/adamw.h"

namespace tessera::kernels::cuda {

namespace {

// The coefficients exactly as kernels/adamw.cc computes them (double, rounded once to T); the
// kernels_cuda AdamW test compares the two devices, so a drift here fails it.
template <typename T>
math::AdamWCoeffs<T> adamw_coeffs(const AdamWStep& hp, bool decay, T grad_scale) {
  if (hp.step < 1) {
    throw std::invalid_argument("cuda adamw_update: step " + std::to_string(hp.step) +
                                " must be >= 1 (1-based)");
  }
  const double t = static_cast<double>(hp.step);
  const double bias1 = 1.0 - std::pow(hp.beta1, t);
  const double bias2 = 1.0 - std::pow(hp.beta2, t);
  math::AdamWCoeffs<T> k;
  k.decay_factor = static_cast<T>(decay ? 1.0 - hp.lr * hp.weight_decay : 1.0);
  k.beta1 = static_cast<T>(hp.beta1);
  k.beta2 = static_cast<T>(hp.beta2);
  k.one_minus_beta1 = static_cast<T>(1.0 - hp.beta1);
  k.one_minus_beta2 = static_cast<T>(1.0 - hp.beta2);
  k.step_size = static_cast<T>(hp.lr / bias1);
  k.bias2_sqrt = static_cast<T>(std::sqrt(bias2));
  k.eps = static_cast<T>(hp.eps);
  k.grad_scale = grad_scale;
  return k;
}

template <typename T>
__global__ void adamw_kernel(T* param, const T* grad, T* m, T* v, int64_t n,
                             math::AdamWCoeffs<T> k) {
  const int64_t i = detail::thread_index();
  if (i >= n) return;
  math::adamw_elem(param + i, grad[i], m + i, v + i, k);
}

}  // namespace

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp, bool decay,
                  T grad_scale, cudaStream_t stream) {
  const math::AdamWCoeffs<T> k = adamw_coeffs(hp, decay, grad_scale);
  if (n <= 0) return;
  adamw_kernel<<<detail::blocks_for(n, "adamw_update"), detail::kThreadsPerBlock, 0, stream>>>(
      param, grad, m, v, n, k);
  check_launch("adamw_kernel");
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWStep&, bool, float, cudaStream_t);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWStep&, bool, double, cudaStream_t);

}  // namespace tessera::kernels::cuda
