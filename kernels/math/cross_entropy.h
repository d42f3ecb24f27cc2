// Cross-entropy row math over a vocabulary row of V logits.
#pragma once

#include <cstdint>

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// lse = max + log(sum exp(x - max)); loss = lse - x[target].
template <typename T>
TESSERA_HD void cross_entropy_forward_row(T* loss, T* lse, const T* logits, int32_t target,
                                          int64_t V) {
  T mx = logits[0];
  for (int64_t v = 1; v < V; ++v) mx = hd_max(mx, logits[v]);
  T sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += hd_exp(logits[v] - mx);
  const T l = mx + hd_log(sum);
  *lse = l;
  *loss = l - logits[target];
}

// dlogits = scale * (exp(x - lse) - onehot(target)); each element is read before it is
// written, so dlogits may alias logits.
template <typename T>
TESSERA_HD void cross_entropy_backward_row(T* dlogits, const T* logits, T lse, int32_t target,
                                           int64_t V, T scale) {
  for (int64_t v = 0; v < V; ++v) {
    const T p = hd_exp(logits[v] - lse);
    dlogits[v] = scale * (v == target ? p - T(1) : p);
  }
}

}  // namespace tessera::kernels::math
