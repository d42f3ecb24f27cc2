#include "kernels/adamw.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu_loop.h"
#include "kernels/math/adamw.h"

namespace tessera::kernels {

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp, bool decay,
                  T grad_scale) {
  if (hp.step < 1) {
    throw std::invalid_argument("adamw_update: step " + std::to_string(hp.step) +
                                " must be >= 1 (1-based)");
  }
  // Host scalars in double as torch computes them, rounded once to T.
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
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) math::adamw_elem(param + i, grad[i], m + i, v + i, k);
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWStep&, bool, float);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWStep&, bool, double);

}  // namespace tessera::kernels
