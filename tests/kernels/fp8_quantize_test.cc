// kernels/fp8_quantize.h: V3's tile and block scales (shape, the max(amax, 1e-4)/448 rule, ragged
// edges), codes within half an e4m3 step of x / scale, the transposed (128x1) tiling, and
// dequantisation.
#include "kernels/fp8_quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/math/low_precision.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::to_float;

struct Quantized {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

Quantized quantize(Fp8Tiling tiling, Trans trans, const std::vector<float>& x, int64_t ldx,
                   int64_t rows, int64_t cols) {
  Quantized q{std::vector<uint8_t>(rows * cols),
              std::vector<float>(fp8_scale_rows(tiling, rows) * fp8_scale_cols(cols))};
  fp8_quantize(q.codes.data(), q.scales.data(), tiling, trans, x.data(), ldx, rows, cols);
  return q;
}

std::vector<float> transpose(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> t(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = x[r * cols + c];
  }
  return t;
}

TEST(Fp8Quantize, ScaleShapes) {
  EXPECT_EQ(fp8_scale_rows(Fp8Tiling::k1x128, 300), 300);
  EXPECT_EQ(fp8_scale_rows(Fp8Tiling::k128x128, 300), 3);
  EXPECT_EQ(fp8_scale_rows(Fp8Tiling::k128x128, 256), 2);
  EXPECT_EQ(fp8_scale_cols(129), 2);
  EXPECT_EQ(fp8_scale_cols(128), 1);
  EXPECT_EQ(fp8_scale_cols(0), 0);
}

// Every tile's scale follows the rule from its own elements, every code is x / scale rounded to
// e4m3, and each tile's largest magnitude lands on ±448. Ragged sizes on both axes.
TEST(Fp8Quantize, TilesFollowTheRecipe) {
  const int64_t rows = 133, cols = 300, ldx = 310;
  std::vector<float> x = to_float(random_vector(rows * ldx, 7, -3.0, 3.0));
  for (int64_t c = 0; c < cols; ++c) x[5 * ldx + c] = 0.0f;      // an all-zero row (1x128 tiles)
  for (int64_t c = 128; c < 256; ++c) x[9 * ldx + c] *= 1e-6f;    // a tiny tile: under the floor
  for (Fp8Tiling tiling : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
    const Quantized q = quantize(tiling, Trans::kNo, x, ldx, rows, cols);
    const int64_t th = tiling == Fp8Tiling::k1x128 ? 1 : 128;
    const int64_t sc = fp8_scale_cols(cols);
    for (int64_t tr = 0; tr < fp8_scale_rows(tiling, rows); ++tr) {
      for (int64_t tc = 0; tc < sc; ++tc) {
        float amax = 0.0f;
        for (int64_t r = tr * th; r < std::min(rows, (tr + 1) * th); ++r) {
          for (int64_t c = tc * 128; c < std::min(cols, (tc + 1) * 128); ++c) {
            amax = std::max(amax, std::abs(x[r * ldx + c]));
          }
        }
        const float want = std::max(amax, 1e-4f) / 448.0f;
        ASSERT_EQ(q.scales[tr * sc + tc], want) << tr << "," << tc;
        bool hit_max = false;
        for (int64_t r = tr * th; r < std::min(rows, (tr + 1) * th); ++r) {
          for (int64_t c = tc * 128; c < std::min(cols, (tc + 1) * 128); ++c) {
            const uint8_t code = q.codes[r * cols + c];
            ASSERT_EQ(code, math::float_to_e4m3(x[r * ldx + c] / want)) << r << "," << c;
            hit_max |= (code & 0x7F) == 0x7E;
          }
        }
        EXPECT_EQ(hit_max, amax >= 1e-4f) << tr << "," << tc;  // floored tiles stay below 448
      }
    }
  }
}

// Dequantised values are within half an e4m3 step of x: relative 2^-4 for normal codes,
// absolute 2^-10 * scale among the subnormals.
TEST(Fp8Quantize, DequantiseIsWithinHalfAStep) {
  const int64_t rows = 130, cols = 260;
  const std::vector<float> x = to_float(random_vector(rows * cols, 8, -50.0, 50.0));
  for (Fp8Tiling tiling : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
    const Quantized q = quantize(tiling, Trans::kNo, x, cols, rows, cols);
    std::vector<float> back(rows * cols);
    fp8_dequantize(back.data(), q.codes.data(), q.scales.data(), tiling, rows, cols);
    const int64_t th = tiling == Fp8Tiling::k1x128 ? 1 : 128;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = r * cols + c;
        const float scale = q.scales[(r / th) * fp8_scale_cols(cols) + c / 128];
        ASSERT_EQ(back[i], math::e4m3_to_float(q.codes[i]) * scale);
        // (1 + 1e-5): room for the fp32 roundings of x / scale and code * scale.
        const double bound = std::max(std::abs(x[i]) * 0x1p-4, 0x1p-10 * scale) * (1 + 1e-5);
        ASSERT_LE(std::abs(back[i] - x[i]), bound) << r << "," << c;
      }
    }
  }
}

// Trans::kYes quantises xᵀ: the same as transposing first. For 1x128 that is the backward's
// 128x1 tiling of x; for 128x128 blocks, the transpose of the forward's codes and scales.
TEST(Fp8Quantize, TransposedTiling) {
  const int64_t rows = 200, cols = 300;  // x as stored; op(x) = xᵀ is [300, 200]
  const std::vector<float> x = to_float(random_vector(rows * cols, 9, -2.0, 2.0));
  const std::vector<float> xt = transpose(x, rows, cols);
  for (Fp8Tiling tiling : {Fp8Tiling::k1x128, Fp8Tiling::k128x128}) {
    const Quantized via_trans = quantize(tiling, Trans::kYes, x, cols, cols, rows);
    const Quantized via_copy = quantize(tiling, Trans::kNo, xt, rows, cols, rows);
    EXPECT_EQ(via_trans.codes, via_copy.codes);
    EXPECT_EQ(via_trans.scales, via_copy.scales);
  }
  const Quantized fwd = quantize(Fp8Tiling::k128x128, Trans::kNo, x, cols, rows, cols);
  const Quantized bwd = quantize(Fp8Tiling::k128x128, Trans::kYes, x, cols, cols, rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_EQ(bwd.codes[c * rows + r], fwd.codes[r * cols + c]) << r << "," << c;
    }
  }
  for (int64_t br = 0; br < 2; ++br) {
    for (int64_t bc = 0; bc < 3; ++bc) EXPECT_EQ(bwd.scales[bc * 2 + br], fwd.scales[br * 3 + bc]);
  }
}

// Outliers stay in their own tile: a huge value coarsens only its tile's resolution.
TEST(Fp8Quantize, AnOutlierOnlyAffectsItsTile) {
  const int64_t rows = 2, cols = 256;
  std::vector<float> x = to_float(random_vector(rows * cols, 10, -1.0, 1.0));
  const Quantized before = quantize(Fp8Tiling::k1x128, Trans::kNo, x, cols, rows, cols);
  x[3] = 1e4f;
  const Quantized after = quantize(Fp8Tiling::k1x128, Trans::kNo, x, cols, rows, cols);
  EXPECT_EQ(after.scales[0], 1e4f / 448.0f);
  for (int64_t t = 1; t < 4; ++t) EXPECT_EQ(after.scales[t], before.scales[t]);
  EXPECT_TRUE(std::equal(after.codes.begin() + 128, after.codes.end(), before.codes.begin() + 128));
}

TEST(Fp8Quantize, NaNStaysInItsElement) {
  std::vector<float> x(128, 1.0f);
  x[7] = std::nanf("");
  const Quantized q = quantize(Fp8Tiling::k1x128, Trans::kNo, x, 128, 1, 128);
  EXPECT_EQ(q.scales[0], 1.0f / 448.0f);
  EXPECT_EQ(q.codes[7] & 0x7F, 0x7F);
  EXPECT_EQ(q.codes[0], 0x7E);
}

TEST(Fp8Quantize, RejectsBadSizes) {
  std::vector<float> x(16);
  std::vector<uint8_t> codes(16);
  std::vector<float> scales(16);
  EXPECT_THROW(fp8_quantize(codes.data(), scales.data(), Fp8Tiling::k1x128, Trans::kNo, x.data(),
                            3, 2, 4),
               std::invalid_argument);  // ldx < cols
  EXPECT_THROW(fp8_quantize(codes.data(), scales.data(), Fp8Tiling::k1x128, Trans::kYes, x.data(),
                            1, 2, 4),
               std::invalid_argument);  // stored [4, 2]: ldx < 2
  EXPECT_THROW(fp8_dequantize(x.data(), codes.data(), scales.data(), Fp8Tiling::k1x128, -1, 4),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
