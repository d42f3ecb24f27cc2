// Scalar helpers for TESSERA_HD math: overloads that resolve to the C math library on the host
// and to CUDA's device math functions under nvcc, so op math never names std:: functions.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"

namespace tessera::kernels::math {

TESSERA_HD float hd_exp(float x) { return expf(x); }
TESSERA_HD double hd_exp(double x) { return exp(x); }
TESSERA_HD float hd_log(float x) { return logf(x); }
TESSERA_HD double hd_log(double x) { return log(x); }
TESSERA_HD float hd_sqrt(float x) { return sqrtf(x); }
TESSERA_HD double hd_sqrt(double x) { return sqrt(x); }

template <typename T>
TESSERA_HD T hd_max(T a, T b) { return a > b ? a : b; }

// 1 / (1 + exp(-x)) without overflow for large |x|.
template <typename T>
TESSERA_HD T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + hd_exp(-x));
  const T e = hd_exp(x);
  return e / (T(1) + e);
}

// Column reductions (weight gradients) work on blocks of at most this many columns; each column
// is summed over rows in row order, so the result does not depend on how columns are split.
constexpr int64_t kColumnBlock = 64;

}  // namespace tessera::kernels::math
