// AdamW element math, in the operation order of torch.optim.AdamW (single-tensor path), and
// the per-step constants it takes, computed once on the host for the CPU and CUDA updates alike.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/adamw.h"
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

// The coefficients of step hp.step: host scalars in double as torch computes them, each rounded
// once to T, so every device updates from the same values. Throws std::invalid_argument
// "<op>: step ..." if hp.step < 1.
template <typename T>
AdamWCoeffs<T> adamw_coeffs(const AdamWStep& hp, bool decay, T grad_scale, const char* op) {
  if (hp.step < 1) {
    throw std::invalid_argument(std::string(op) + ": step " + std::to_string(hp.step) +
                                " must be >= 1 (1-based)");
  }
  const double t = static_cast<double>(hp.step);
  const double bias1 = 1.0 - std::pow(hp.beta1, t);
  const double bias2 = 1.0 - std::pow(hp.beta2, t);
  AdamWCoeffs<T> k;
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
