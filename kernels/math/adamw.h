// AdamW element math, in the operation order of torch.optim.AdamW (single-tensor path).
#pragma once

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// Per-step constants, computed once on the host in double and rounded to T.
template <typename T>
struct AdamWCoeffs {
  T decay_factor;     // 1 - lr * wd (1 when the parameter is not decayed)
  T beta1, beta2;
  T one_minus_beta1, one_minus_beta2;
  T step_size;        // lr / (1 - beta1^t)
  T bias2_sqrt;       // sqrt(1 - beta2^t)
  T eps;
  T grad_scale;
};

template <typename T>
TESSERA_HD void adamw_elem(T* p, T grad, T* m, T* v, const AdamWCoeffs<T>& k) {
  const T g = grad * k.grad_scale;
  T pi = *p * k.decay_factor;
  const T mi = *m * k.beta1 + g * k.one_minus_beta1;
  const T vi = *v * k.beta2 + g * g * k.one_minus_beta2;
  const T denom = hd_sqrt(vi) / k.bias2_sqrt + k.eps;
  pi -= k.step_size * (mi / denom);
  *p = pi;
  *m = mi;
  *v = vi;
}

}  // namespace tessera::kernels::math
