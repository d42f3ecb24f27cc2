#include "kernels/fp8_quantize.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cpu_simd.h"
#include "kernels/math/fp8_scaling.h"

namespace tessera::kernels {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_sizes(const char* op, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument(std::string(op) + ": negative size rows=" +
                                std::to_string(rows) + " cols=" + std::to_string(cols));
  }
}

// Rows that share one scale: 1 for activations' 1x128 tiles, 128 for weight blocks.
int64_t tile_rows(Fp8Tiling tiling) { return tiling == Fp8Tiling::k1x128 ? 1 : kFp8TileK; }

// One stored row's run of n values within a tile: folded into amax, or quantised with scale
// (math::fp8_quantize_elem's bits through the branch-free conversion).
TESSERA_CPU_CLONES float run_amax(const float* x, int64_t n, float amax) {
#pragma omp simd reduction(max : amax)
  for (int64_t i = 0; i < n; ++i) amax = math::fp8_amax_update(amax, x[i]);
  return amax;
}
TESSERA_CPU_CLONES void quantise_run(uint8_t* codes, const float* x, int64_t n, float scale) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) codes[i] = cpu::e4m3_bits_f32(x[i] / scale);
}

// op(x) = xᵀ in 1x128 tiles (weight gradients tile their operands along the tokens): a tile is
// up to 128 consecutive stored rows of one stored column, so stripes of stored columns are
// walked stored row by stored row (contiguous loads), one running amax per column of the stripe.
TESSERA_CPU_CLONES void quantise_transposed_row_tiles(uint8_t* codes, float* scales,
                                                      const float* x, int64_t ldx, int64_t rows,
                                                      int64_t cols) {
  constexpr int64_t kStripe = 64;
  const int64_t scale_cols = fp8_scale_cols(cols);
  float amax[kStripe], scale[kStripe];
  for (int64_t tc = 0; tc < scale_cols; ++tc) {
    const int64_t c0 = tc * kFp8TileK, c1 = std::min(cols, c0 + kFp8TileK);
    for (int64_t r0 = 0; r0 < rows; r0 += kStripe) {
      const int64_t n = std::min(kStripe, rows - r0);
      std::fill(amax, amax + n, 0.0f);
      for (int64_t c = c0; c < c1; ++c) {
        const float* stored = x + c * ldx + r0;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) amax[i] = math::fp8_amax_update(amax[i], stored[i]);
      }
      for (int64_t i = 0; i < n; ++i) {
        scale[i] = math::fp8_scale(amax[i]);
        scales[(r0 + i) * scale_cols + tc] = scale[i];
      }
      for (int64_t c = c0; c < c1; ++c) {
        const float* stored = x + c * ldx + r0;
        for (int64_t i = 0; i < n; ++i) {
          codes[(r0 + i) * cols + c] = cpu::e4m3_bits_f32(stored[i] / scale[i]);
        }
      }
    }
  }
}

}  // namespace

int64_t fp8_scale_rows(Fp8Tiling tiling, int64_t rows) {
  return ceil_div(rows, tile_rows(tiling));
}

int64_t fp8_scale_cols(int64_t cols) { return ceil_div(cols, kFp8TileK); }

void fp8_quantize(uint8_t* codes, float* scales, Fp8Tiling tiling, Trans trans, const float* x,
                  int64_t ldx, int64_t rows, int64_t cols) {
  check_sizes("fp8_quantize", rows, cols);
  const int64_t stored_width = trans == Trans::kNo ? cols : rows;
  if (ldx < std::max<int64_t>(stored_width, 1)) {
    throw std::invalid_argument("fp8_quantize: row stride ldx=" + std::to_string(ldx) +
                                " < stored row width " + std::to_string(stored_width));
  }
  // op(x)(r, c) as stored.
  auto at = [&](int64_t r, int64_t c) {
    return trans == Trans::kNo ? x[r * ldx + c] : x[c * ldx + r];
  };
  if (tiling == Fp8Tiling::k1x128 && trans == Trans::kYes) {
    quantise_transposed_row_tiles(codes, scales, x, ldx, rows, cols);
    return;
  }
  const int64_t th = tile_rows(tiling);
  const int64_t scale_cols = fp8_scale_cols(cols);
  for (int64_t tr = 0; tr < fp8_scale_rows(tiling, rows); ++tr) {
    const int64_t r0 = tr * th, r1 = std::min(rows, r0 + th);
    for (int64_t tc = 0; tc < scale_cols; ++tc) {
      const int64_t c0 = tc * kFp8TileK, c1 = std::min(cols, c0 + kFp8TileK);
      float amax = 0.0f;
      if (trans == Trans::kNo) {
        for (int64_t r = r0; r < r1; ++r) amax = run_amax(x + r * ldx + c0, c1 - c0, amax);
      } else {
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t c = c0; c < c1; ++c) amax = math::fp8_amax_update(amax, at(r, c));
        }
      }
      const float scale = math::fp8_scale(amax);
      scales[tr * scale_cols + tc] = scale;
      for (int64_t r = r0; r < r1; ++r) {
        if (trans == Trans::kNo) {
          quantise_run(codes + r * cols + c0, x + r * ldx + c0, c1 - c0, scale);
        } else {
          for (int64_t c = c0; c < c1; ++c) {
            codes[r * cols + c] = cpu::e4m3_bits_f32(at(r, c) / scale);
          }
        }
      }
    }
  }
}

void fp8_dequantize(float* x, const uint8_t* codes, const float* scales, Fp8Tiling tiling,
                    int64_t rows, int64_t cols) {
  check_sizes("fp8_dequantize", rows, cols);
  const int64_t th = tile_rows(tiling);
  const int64_t scale_cols = fp8_scale_cols(cols);
  float value_of[256];  // every code's value: a table lookup instead of the decoding
  for (int code = 0; code < 256; ++code) {
    value_of[code] = math::e4m3_to_float(static_cast<uint8_t>(code));
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = scales[(r / th) * scale_cols + c / kFp8TileK];
      x[r * cols + c] = value_of[codes[r * cols + c]] * scale;
    }
  }
}

}  // namespace tessera::kernels
