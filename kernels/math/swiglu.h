// SwiGLU element math: h = silu(a) * b, silu(a) = a * sigmoid(a).
#pragma once

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

template <typename T>
TESSERA_HD T swiglu_forward_elem(T a, T b) {
  return a * sigmoid(a) * b;
}

// da = dh * b * sig(a) * (1 + a (1 - sig(a))),  db = dh * silu(a).
template <typename T>
TESSERA_HD void swiglu_backward_elem(T* da, T* db, T dh, T a, T b) {
  const T s = sigmoid(a);
  *da = dh * b * s * (T(1) + a * (T(1) - s));
  *db = dh * a * s;
}

}  // namespace tessera::kernels::math
