// The GEMM each linear op runs at bf16 or fp8, with DeepSeek-V3's tilings, written once for every
// backend's low-precision GEMM (CPU: LowPrecisionGemm in kernels/cpu_backend.cc; CUDA:
// kernels/cuda/low_precision_gemm.h), whose run() takes C [m, n] (+)= op(A) [m, k] times op(B)
// [n, k] transposed:
//   forward  y = x W^T      x in 1x128 tiles along K, W in 128x128 blocks
//   dgrad    dx = dy W      dy in 1x128 tiles, W^T in 128x128 blocks
//   wgrad    dW += dy^T x   both activations tiled along the tokens (128x1 tiles), accumulated
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"

namespace tessera::kernels {

struct LinearGemm {
  int64_t m, n, k;
  const float* a;
  int64_t lda;
  Trans trans_a;
  Fp8Tiling tiling_a;
  const float* b;
  int64_t ldb;
  Trans trans_b;
  Fp8Tiling tiling_b;
  float beta;
  float* c;
  int64_t ldc;

  template <typename Gemm>
  void run_on(Gemm& gemm, Precision precision) const {
    gemm.run(precision, m, n, k, a, lda, trans_a, tiling_a, b, ldb, trans_b, tiling_b, beta, c,
             ldc);
  }
};

// The linear ops' shapes (kernels/backend.h): x [N, I], W [O, I], y [N, O].
inline LinearGemm linear_forward_gemm(float* y, int64_t ldy, const float* x, int64_t ldx,
                                      const float* W, int64_t N, int64_t I, int64_t O,
                                      bool accumulate) {
  return {N, O, I, x, ldx, Trans::kNo, Fp8Tiling::k1x128, W, I, Trans::kNo, Fp8Tiling::k128x128,
          accumulate ? 1.0f : 0.0f, y, ldy};
}

inline LinearGemm linear_backward_input_gemm(float* dx, int64_t lddx, const float* dy,
                                             int64_t lddy, const float* W, int64_t N, int64_t I,
                                             int64_t O, bool accumulate) {
  return {N, I, O, dy, lddy, Trans::kNo, Fp8Tiling::k1x128, W, I, Trans::kYes,
          Fp8Tiling::k128x128, accumulate ? 1.0f : 0.0f, dx, lddx};
}

inline LinearGemm linear_backward_weight_gemm(float* dW, const float* dy, int64_t lddy,
                                              const float* x, int64_t ldx, int64_t N, int64_t I,
                                              int64_t O) {
  return {O, I, N, dy, lddy, Trans::kYes, Fp8Tiling::k1x128, x, ldx, Trans::kYes,
          Fp8Tiling::k1x128, 1.0f, dW, I};
}

}  // namespace tessera::kernels
