// DeepSeek-V3's fine-grained FP8 scaling (V3 report §3.3), per element, for CPU and GPU: a tile
// (or block) of values shares one fp32 scale that maps its largest magnitude onto E4M3's largest
// value, so each tile uses the format's whole range whatever the others hold.
//   scale = max(amax, 1e-4) / 448,  code = e4m3(x / scale),  x ≈ e4m3_to_float(code) * scale.
// The floor keeps all-zero (or tiny) tiles finite. NaN elements become NaN codes; they do not
// enter amax (comparisons with NaN are false), so one NaN does not spoil its tile's other values.
#pragma once

#include <cstdint>

#include "kernels/math/low_precision.h"

namespace tessera::kernels::math {

constexpr float kFp8AmaxFloor = 1e-4f;

// Folds |x| into a running amax (start from 0).
TESSERA_HD float fp8_amax_update(float amax, float x) {
  const float a = x < 0.0f ? -x : x;
  return a > amax ? a : amax;
}

TESSERA_HD float fp8_scale(float amax) {
  return (amax > kFp8AmaxFloor ? amax : kFp8AmaxFloor) / kE4M3Max;
}

// x / scale, not x * (1 / scale): the recipe's rule as written (and |x| <= amax stays within
// ±448 up to one rounding, which the saturating conversion absorbs).
TESSERA_HD uint8_t fp8_quantize_elem(float x, float scale) { return float_to_e4m3(x / scale); }

}  // namespace tessera::kernels::math
