// Causal softmax row math for attention: row t of a (T, T) score matrix attends to 0..t.
#pragma once

#include <cstdint>

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// In place: p[0..n_valid) = softmax(p[0..n_valid)) (max-subtracted), p[n_valid..n_total) = 0.
// REQUIRES: n_valid >= 1.
template <typename T>
TESSERA_HD void causal_softmax_row(T* p, int64_t n_valid, int64_t n_total) {
  T mx = p[0];
  for (int64_t j = 1; j < n_valid; ++j) mx = hd_max(mx, p[j]);
  T sum = 0;
  for (int64_t j = 0; j < n_valid; ++j) {
    const T e = hd_exp(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < n_valid; ++j) p[j] *= inv;
  for (int64_t j = n_valid; j < n_total; ++j) p[j] = 0;
}

// In place: dp (gradient of the probabilities) becomes the gradient of the pre-scale scores,
// ds_j = scale * p_j * (dp_j - sum_i p_i dp_i) for j < n_valid, and 0 beyond.
template <typename T>
TESSERA_HD void causal_softmax_backward_row(T* dp, const T* p, int64_t n_valid, int64_t n_total,
                                            T scale) {
  T dot = 0;
  for (int64_t j = 0; j < n_valid; ++j) dot += p[j] * dp[j];
  for (int64_t j = 0; j < n_valid; ++j) dp[j] = scale * p[j] * (dp[j] - dot);
  for (int64_t j = n_valid; j < n_total; ++j) dp[j] = 0;
}

}  // namespace tessera::kernels::math
