// MoE permute/combine row math. pos_row points at token n's k entries of pos_of_slot.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace tessera::kernels::math {

template <typename T>
TESSERA_HD void copy_row(T* dst, const T* src, int64_t C) {
  for (int64_t c = 0; c < C; ++c) dst[c] = src[c];
}

// dx = sum_j dxp[pos_row[j]]  (j ascending; written, or added onto dx when accumulate).
template <typename T>
TESSERA_HD void permute_backward_row(T* dx, const T* dxp, const int32_t* pos_row, int64_t k,
                                     int64_t C, bool accumulate) {
  if (!accumulate) {
    for (int64_t c = 0; c < C; ++c) dx[c] = 0;
  }
  for (int64_t j = 0; j < k; ++j) {
    const T* src = dxp + int64_t{pos_row[j]} * C;
    for (int64_t c = 0; c < C; ++c) dx[c] += src[c];
  }
}

// y = sum_j gates[j] * yp[pos_row[j]]  (j ascending; written, or added onto y when accumulate).
template <typename T>
TESSERA_HD void combine_row(T* y, const T* yp, const T* gates_row, const int32_t* pos_row,
                            int64_t k, int64_t C, bool accumulate) {
  if (!accumulate) {
    for (int64_t c = 0; c < C; ++c) y[c] = 0;
  }
  for (int64_t j = 0; j < k; ++j) {
    const T g = gates_row[j];
    const T* src = yp + int64_t{pos_row[j]} * C;
    for (int64_t c = 0; c < C; ++c) y[c] += g * src[c];
  }
}

// dyp[pos_row[j]] = gates[j] * dy;  dgates[j] = <dy, yp[pos_row[j]]>.
template <typename T>
TESSERA_HD void combine_backward_row(T* dyp, T* dgates_row, const T* dy, const T* yp,
                                     const T* gates_row, const int32_t* pos_row, int64_t k,
                                     int64_t C) {
  for (int64_t j = 0; j < k; ++j) {
    const int64_t p = pos_row[j];
    const T g = gates_row[j];
    T dot = 0;
    for (int64_t c = 0; c < C; ++c) {
      dyp[p * C + c] = g * dy[c];
      dot += dy[c] * yp[p * C + c];
    }
    dgates_row[j] = dot;
  }
}

}  // namespace tessera::kernels::math
