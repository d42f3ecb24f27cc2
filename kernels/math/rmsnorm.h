// RMSNorm row math, shared by the CPU loops and the CUDA kernels.
#pragma once

#include <cstdint>

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// One row: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).
template <typename T>
TESSERA_HD void rmsnorm_forward_row(T* y, T* rstd, const T* x, const T* w, int64_t C, T eps) {
  T ss = 0;
  for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
  const T r = T(1) / hd_sqrt(ss / T(C) + eps);
  *rstd = r;
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r * w[c];
}

// One row: dx_c = r w_c dy_c - x_c r^3 / C * sum_i dy_i w_i x_i  (written or added).
template <typename T>
TESSERA_HD void rmsnorm_backward_input_row(T* dx, const T* dy, const T* x, const T* w, T r,
                                           int64_t C, bool accumulate) {
  T dot = 0;
  for (int64_t c = 0; c < C; ++c) dot += dy[c] * w[c] * x[c];
  const T coef = dot * r * r * r / T(C);
  for (int64_t c = 0; c < C; ++c) {
    const T g = r * w[c] * dy[c] - coef * x[c];
    dx[c] = accumulate ? dx[c] + g : g;
  }
}

// Columns [c0, c1) of dw += sum_n dy[n] * x[n] * rstd[n], rows summed in order.
// REQUIRES: c1 - c0 <= kColumnBlock.
template <typename T>
TESSERA_HD void rmsnorm_backward_weight_cols(T* dw, const T* dy, const T* x, const T* rstd,
                                             int64_t N, int64_t C, int64_t c0, int64_t c1) {
  T acc[kColumnBlock];
  const int64_t width = c1 - c0;
  for (int64_t i = 0; i < width; ++i) acc[i] = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T r = rstd[n];
    const T* dy_row = dy + n * C + c0;
    const T* x_row = x + n * C + c0;
    for (int64_t i = 0; i < width; ++i) acc[i] += dy_row[i] * x_row[i] * r;
  }
  for (int64_t i = 0; i < width; ++i) dw[c0 + i] += acc[i];
}

}  // namespace tessera::kernels::math
