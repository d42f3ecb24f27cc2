#include "kernels/rope.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/math/rope.h"

namespace tessera::kernels {

namespace {
void check_hd(int64_t hd) {
  if (hd <= 0 || hd % 2 != 0) {
    throw std::invalid_argument("rope: head_dim " + std::to_string(hd) + " must be even and > 0");
  }
}

// math::rope_rotate_row in float, vectorised over the pairs (the same operations).
TESSERA_CPU_CLONES void rope_rotate_row_f32(float* x, const float* cos_row, const float* sin_row,
                                            int64_t H, int64_t hd, float sign) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < H; ++h) {
    float* xh = x + h * hd;
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      const float c = cos_row[i];
      const float s = sign * sin_row[i];
      const float x0 = xh[2 * i];
      const float x1 = xh[2 * i + 1];
      xh[2 * i] = x0 * c - x1 * s;
      xh[2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

template <typename T>
void rope_apply(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                int64_t T_len, int64_t H, int64_t hd, T sign) {
  check_hd(hd);
  if (ld < H * hd) {
    throw std::invalid_argument("rope: row stride " + std::to_string(ld) + " < H*hd = " +
                                std::to_string(H * hd));
  }
  const int64_t half = hd / 2;
  const int64_t rows = B * T_len;
#pragma omp parallel for if (rows * H * hd >= cpu::kMinParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % T_len;
    if constexpr (std::is_same_v<T, float>) {
      rope_rotate_row_f32(x + r * ld, cos_table + t * half, sin_table + t * half, H, hd, sign);
    } else {
      math::rope_rotate_row(x + r * ld, cos_table + t * half, sin_table + t * half, H, hd,
                            sign);
    }
  }
}
}  // namespace

// Angles in double, then rounded once to T.
template <typename T>
void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd, double theta) {
  check_hd(hd);
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
    for (int64_t t = 0; t < T_len; ++t) {
      const double angle = static_cast<double>(t) * freq;
      cos_table[t * half + i] = static_cast<T>(std::cos(angle));
      sin_table[t * half + i] = static_cast<T>(std::sin(angle));
    }
  }
}

template <typename T>
void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                  int64_t T_len, int64_t H, int64_t hd) {
  rope_apply(x, ld, cos_table, sin_table, B, T_len, H, hd, T(1));
}

template <typename T>
void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                   int64_t T_len, int64_t H, int64_t hd) {
  rope_apply(dx, ld, cos_table, sin_table, B, T_len, H, hd, T(-1));
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void rope_table<T>(T*, T*, int64_t, int64_t, double);                             \
  template void rope_forward<T>(T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t,  \
                                int64_t);                                                    \
  template void rope_backward<T>(T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t, \
                                 int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
