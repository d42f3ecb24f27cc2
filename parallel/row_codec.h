// The wire format of the rows an expert exchange moves (DESIGN.md "Precision"; V3 report §3.3.2,
// "Low-precision communication"): fp32 (as stored), bf16, or fp8 e4m3 with per-tile scales.
// A packed row is a run of 32-bit words, so it travels through Comm's uint32_t all_to_all_v
// (parallel/expert_dispatch.h dispatch_packed / combine_packed, node_dispatch.h's *_packed):
//
//   kFp32  width words: the floats' bits
//   kBf16  ceil(width/2) words: element 2i in the low 16 bits of word i, 2i+1 in the high ones
//   kFp8   ceil(width/4) words of e4m3 codes (element 4i in the lowest byte of word i), then
//          ceil(width/128) words: the fp32 bits of each 1x128 tile's scale (a ragged last tile
//          has its own scale), the activations' tiling of kernels/fp8_quantize.h
//
// fp8 scales are POWERS OF TWO, as V3 quantises the dispatched activations ("scaling factors for
// this activation are integral power of 2", §3.3.2; DeepEP's round_scale): the recipe's scale
// max(amax, 1e-4)/448 (kernels/math/fp8_scaling.h) rounded UP to the next power of two, so a
// tile's largest value still maps into ±448. Dividing by and multiplying with a power of two is
// exact, so decode(encode(x)) is x rounded to e4m3 once, relative to its tile; and re-encoding
// decoded rows gives back the same values (a forwarder that requantises a row loses nothing:
// the node-aware dispatch's second hop). The element rounding is the one-code conversion of
// kernels/math/low_precision.h (nearest even, saturating e4m3).
//
// round_trip_rows() applies exactly decode(encode(.)) in place: what a row becomes after an
// exchange, for the rows that do not move (one process), so numerics never depend on the layout.
// Host memory only; header-only (no new library sources).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/fp8_quantize.h"
#include "kernels/math/fp8_scaling.h"
#include "kernels/math/low_precision.h"

namespace tessera::parallel {

enum class RowFormat : uint8_t { kFp32, kBf16, kFp8 };

inline const char* row_format_name(RowFormat f) {
  switch (f) {
    case RowFormat::kFp32: return "fp32";
    case RowFormat::kBf16: return "bf16";
    case RowFormat::kFp8: return "fp8";
  }
  return "?";
}

// 32-bit words of one packed row of `width` floats (layout above).
inline int64_t row_words(RowFormat f, int64_t width) {
  if (width < 1) throw std::invalid_argument("row_words: width " + std::to_string(width) + " < 1");
  switch (f) {
    case RowFormat::kFp32: return width;
    case RowFormat::kBf16: return (width + 1) / 2;
    case RowFormat::kFp8:
      return (width + 3) / 4 + (width + kernels::kFp8TileK - 1) / kernels::kFp8TileK;
  }
  return width;
}
inline int64_t row_bytes(RowFormat f, int64_t width) {
  return row_words(f, width) * static_cast<int64_t>(sizeof(uint32_t));
}

// The dispatch's fp8 scale of a tile with largest magnitude `amax`: the recipe's
// max(amax, 1e-4)/448 rounded up to a power of two (V3: integral powers of two for the
// dispatched activations).
inline float fp8_pow2_scale(float amax) {
  const float s = kernels::math::fp8_scale(amax);
  if (!std::isfinite(s)) return s;
  int e = 0;
  const float m = std::frexp(s, &e);  // s = m * 2^e, 0.5 <= m < 1
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}

// One row: `width` floats -> row_words(f, width) words, and back.
inline void encode_row(RowFormat f, const float* x, int64_t width, uint32_t* out) {
  namespace m = kernels::math;
  switch (f) {
    case RowFormat::kFp32:
      std::memcpy(out, x, sizeof(float) * static_cast<size_t>(width));
      return;
    case RowFormat::kBf16:
      for (int64_t i = 0; i < width; i += 2) {
        const uint32_t lo = m::float_to_bf16(x[i]);
        const uint32_t hi = i + 1 < width ? m::float_to_bf16(x[i + 1]) : 0u;
        out[i / 2] = lo | hi << 16;
      }
      return;
    case RowFormat::kFp8: {
      const int64_t code_words = (width + 3) / 4;
      uint32_t* scales = out + code_words;
      std::memset(out, 0, sizeof(uint32_t) * static_cast<size_t>(code_words));
      for (int64_t t0 = 0, tile = 0; t0 < width; t0 += kernels::kFp8TileK, ++tile) {
        const int64_t t1 = std::min<int64_t>(t0 + kernels::kFp8TileK, width);
        float amax = 0.0f;
        for (int64_t i = t0; i < t1; ++i) amax = m::fp8_amax_update(amax, x[i]);
        const float scale = fp8_pow2_scale(amax);
        std::memcpy(&scales[tile], &scale, sizeof scale);
        for (int64_t i = t0; i < t1; ++i) {
          out[i / 4] |= static_cast<uint32_t>(m::fp8_quantize_elem(x[i], scale)) << (8 * (i % 4));
        }
      }
      return;
    }
  }
}

inline void decode_row(RowFormat f, const uint32_t* in, int64_t width, float* x) {
  namespace m = kernels::math;
  switch (f) {
    case RowFormat::kFp32:
      std::memcpy(x, in, sizeof(float) * static_cast<size_t>(width));
      return;
    case RowFormat::kBf16:
      for (int64_t i = 0; i < width; ++i) {
        x[i] = m::bf16_to_float(static_cast<uint16_t>(in[i / 2] >> (16 * (i % 2))));
      }
      return;
    case RowFormat::kFp8: {
      const uint32_t* scales = in + (width + 3) / 4;
      for (int64_t i = 0; i < width; ++i) {
        float scale;
        std::memcpy(&scale, &scales[i / kernels::kFp8TileK], sizeof scale);
        // As kernels::fp8_dequantize: code's value times the tile's scale, in fp32.
        x[i] = m::e4m3_to_float(static_cast<uint8_t>(in[i / 4] >> (8 * (i % 4)))) * scale;
      }
      return;
    }
  }
}

// rows x width floats <-> rows x row_words(f, width) words, row by row.
inline void encode_rows(RowFormat f, const float* x, int64_t rows, int64_t width, uint32_t* out) {
  const int64_t w = row_words(f, width);
  for (int64_t r = 0; r < rows; ++r) encode_row(f, x + r * width, width, out + r * w);
}
inline void decode_rows(RowFormat f, const uint32_t* in, int64_t rows, int64_t width, float* x) {
  const int64_t w = row_words(f, width);
  for (int64_t r = 0; r < rows; ++r) decode_row(f, in + r * w, width, x + r * width);
}

// x = decode(encode(x)), row by row, in place: the value a row has after an exchange in format f.
inline void round_trip_rows(RowFormat f, float* x, int64_t rows, int64_t width) {
  if (f == RowFormat::kFp32) return;
  std::vector<uint32_t> packed(static_cast<size_t>(row_words(f, width)));
  for (int64_t r = 0; r < rows; ++r) {
    encode_row(f, x + r * width, width, packed.data());
    decode_row(f, packed.data(), width, x + r * width);
  }
}

}  // namespace tessera::parallel
