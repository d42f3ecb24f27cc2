#include "kernels/fp8_quantize.h"

#include <algorithm>
#include <stdexcept>
#include <string>

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
  const int64_t th = tile_rows(tiling);
  const int64_t scale_cols = fp8_scale_cols(cols);
  for (int64_t tr = 0; tr < fp8_scale_rows(tiling, rows); ++tr) {
    const int64_t r0 = tr * th, r1 = std::min(rows, r0 + th);
    for (int64_t tc = 0; tc < scale_cols; ++tc) {
      const int64_t c0 = tc * kFp8TileK, c1 = std::min(cols, c0 + kFp8TileK);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) amax = math::fp8_amax_update(amax, at(r, c));
      }
      const float scale = math::fp8_scale(amax);
      scales[tr * scale_cols + tc] = scale;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) {
          codes[r * cols + c] = math::fp8_quantize_elem(at(r, c), scale);
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
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = scales[(r / th) * scale_cols + c / kFp8TileK];
      x[r * cols + c] = math::e4m3_to_float(codes[r * cols + c]) * scale;
    }
  }
}

}  // namespace tessera::kernels
