// RoPE row math: rotate adjacent pairs (2i, 2i+1) of every head, as complex multiplication
// (x0 + i x1) * (cos + i sin) like DeepSeek-V3's view_as_complex; sign = -1 rotates back.
#pragma once

#include <cstdint>

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// One (b, t) row of H heads of hd values; cos_row/sin_row hold hd/2 values for this position.
template <typename T>
TESSERA_HD void rope_rotate_row(T* x, const T* cos_row, const T* sin_row, int64_t H, int64_t hd,
                                T sign) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < H; ++h) {
    T* xh = x + h * hd;
    for (int64_t i = 0; i < half; ++i) {
      const T c = cos_row[i];
      const T s = sign * sin_row[i];
      const T x0 = xh[2 * i];
      const T x1 = xh[2 * i + 1];
      xh[2 * i] = x0 * c - x1 * s;
      xh[2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

}  // namespace tessera::kernels::math
