#include "kernels/quantized_gemm.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/math/low_precision.h"

namespace tessera::kernels {

namespace {

void check_sizes(const char* op, int64_t m, int64_t n, int64_t k) {
  if (m < 0 || n < 0 || k < 0) {
    throw std::invalid_argument(std::string(op) + ": negative size m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
}

// Every e4m3 code's value, so the inner loop reads a table instead of decoding.
std::array<float, 256> e4m3_table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = math::e4m3_to_float(static_cast<uint8_t>(c));
  return t;
}

// The scale of row `row` for K chunk `chunk`, in a scale array of that tiling.
float scale_at(const float* scales, Fp8Tiling tiling, int64_t row, int64_t chunk,
               int64_t scale_cols) {
  const int64_t scale_row = tiling == Fp8Tiling::k1x128 ? row : row / kFp8TileK;
  return scales[scale_row * scale_cols + chunk];
}

}  // namespace

float truncate_mantissa(float x, int bits) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u &= ~((uint32_t{1} << (23 - bits)) - 1u);
  std::memcpy(&x, &u, sizeof x);
  return x;
}

void fp8_gemm(float* d, const uint8_t* a, const float* a_scales, Fp8Tiling a_tiling,
              const uint8_t* b, const float* b_scales, Fp8Tiling b_tiling, int64_t m, int64_t n,
              int64_t k, const Fp8GemmOptions& options) {
  check_sizes("fp8_gemm", m, n, k);
  const int bits = options.unpromoted_mantissa_bits;
  if (!options.promote && (bits < 0 || bits > 23)) {
    throw std::invalid_argument("fp8_gemm: unpromoted_mantissa_bits=" + std::to_string(bits) +
                                " is not in [0, 23]");
  }
  static const std::array<float, 256> kValue = e4m3_table();
  const int64_t chunks = fp8_scale_cols(k);
  for (int64_t i = 0; i < m; ++i) {
    const uint8_t* ai = a + i * k;
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t* bj = b + j * k;
      float acc = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) {
        const float scale = scale_at(a_scales, a_tiling, i, c, chunks) *
                            scale_at(b_scales, b_tiling, j, c, chunks);
        const int64_t k0 = c * kFp8TileK, k1 = std::min(k, k0 + kFp8TileK);
        if (options.promote) {
          float partial = 0.0f;
          for (int64_t kk = k0; kk < k1; ++kk) partial += kValue[ai[kk]] * kValue[bj[kk]];
          acc = std::fma(scale, partial, acc);
        } else {
          for (int64_t kk = k0; kk < k1; ++kk) {
            const float term = scale * (kValue[ai[kk]] * kValue[bj[kk]]);
            acc = truncate_mantissa(acc + term, bits);
          }
        }
      }
      d[i * n + j] = acc;
    }
  }
}

void bf16_gemm(float* d, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t m,
               int64_t n, int64_t k) {
  const int64_t ldd = std::max<int64_t>(n, 1);
  check_gemm_args("bf16_gemm", Trans::kNo, Trans::kYes, m, n, k, lda, ldb, ldd, "BLAS");
  std::vector<float> ar(static_cast<size_t>(m * k)), br(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < k; ++kk) ar[i * k + kk] = math::round_to_bf16(a[i * lda + kk]);
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t kk = 0; kk < k; ++kk) br[j * k + kk] = math::round_to_bf16(b[j * ldb + kk]);
  }
  gemm<float>(Trans::kNo, Trans::kYes, m, n, k, 1.0f, ar.data(), std::max<int64_t>(k, 1),
              br.data(), std::max<int64_t>(k, 1), 0.0f, d, ldd);
}

}  // namespace tessera::kernels
