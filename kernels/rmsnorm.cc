#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/gemm.h"
#include "kernels/math/rmsnorm.h"

namespace tessera::kernels {

namespace {

// float rows: math/rmsnorm.h's formulas vectorised (kernels/cpu_simd.h), each row sum by
// cpu::lane_sum.
TESSERA_CPU_CLONES void rmsnorm_forward_row_f32(float* y, float* rstd, const float* x,
                                                const float* w, int64_t C, float eps) {
  const float ss = cpu::lane_sum<float>(C, [&](int64_t c) { return x[c] * x[c]; });
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
  *rstd = r;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r * w[c];
}

TESSERA_CPU_CLONES void rmsnorm_backward_input_row_f32(float* dx, const float* dy,
                                                       const float* x, const float* w, float r,
                                                       int64_t C, bool accumulate) {
  const float dot = cpu::lane_sum<float>(C, [&](int64_t c) { return dy[c] * w[c] * x[c]; });
  const float coef = dot * r * r * r / static_cast<float>(C);
  if (accumulate) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] = dx[c] + (r * w[c] * dy[c] - coef * x[c]);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] = r * w[c] * dy[c] - coef * x[c];
  }
}

// Rows of one float weight-gradient chunk: the chunks' sums are added in chunk order, so the
// result does not depend on how many threads share the chunks.
constexpr int64_t kRowChunk = 256;

// part[c] = sum over rows [n0, n1), in row order, of dy[n][c] * x[n][c] * rstd[n]: one chunk's
// column sums, every column at once (a thread streams whole rows; blocks of columns on each
// thread read every row in pieces, and two threads ran 0.78x as fast as one).
TESSERA_CPU_CLONES void rmsnorm_backward_weight_rows_f32(float* part, const float* dy,
                                                         const float* x, const float* rstd,
                                                         int64_t C, int64_t n0, int64_t n1) {
  for (int64_t c = 0; c < C; ++c) part[c] = 0;
  for (int64_t n = n0; n < n1; ++n) {
    const float r = rstd[n];
    const float* dy_row = dy + n * C;
    const float* x_row = x + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) part[c] += dy_row[c] * x_row[c] * r;
  }
}

}  // namespace

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C, T eps) {
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      rmsnorm_forward_row_f32(y + n * C, rstd + n, x + n * C, w, C, eps);
    } else {
      math::rmsnorm_forward_row(y + n * C, rstd + n, x + n * C, w, C, eps);
    }
  }
}

template <typename T>
void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                            int64_t C, bool accumulate) {
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    if constexpr (std::is_same_v<T, float>) {
      rmsnorm_backward_input_row_f32(dx + n * C, dy + n * C, x + n * C, w, rstd[n], C,
                                     accumulate);
    } else {
      math::rmsnorm_backward_input_row(dx + n * C, dy + n * C, x + n * C, w, rstd[n], C,
                                       accumulate);
    }
  }
}

template <typename T>
void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                             int64_t C) {
  if constexpr (std::is_same_v<T, float>) {
    if (N == 0) return;
    const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
    // Every chunk's row is written whole by its kernel call: no zeroing here.
    const auto parts = std::make_unique_for_overwrite<float[]>(static_cast<size_t>(chunks * C));
#pragma omp parallel for if (chunks > 1 && N * C >= cpu::kMinParallelWork)
    for (int64_t k = 0; k < chunks; ++k) {
      rmsnorm_backward_weight_rows_f32(parts.get() + k * C, dy, x, rstd, C, k * kRowChunk,
                                       std::min(N, (k + 1) * kRowChunk));
    }
    for (int64_t k = 1; k < chunks; ++k) {
      const float* part = parts.get() + k * C;
      for (int64_t c = 0; c < C; ++c) parts[c] += part[c];
    }
    for (int64_t c = 0; c < C; ++c) dw[c] += parts[c];
    return;
  }
  const int64_t n_blocks = (C + math::kColumnBlock - 1) / math::kColumnBlock;
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t c0 = blk * math::kColumnBlock;
    const int64_t c1 = c0 + math::kColumnBlock < C ? c0 + math::kColumnBlock : C;
    math::rmsnorm_backward_weight_cols(dw, dy, x, rstd, N, C, c0, c1);
  }
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);         \
  template void rmsnorm_backward_input<T>(T*, const T*, const T*, const T*, const T*, int64_t, \
                                          int64_t, bool);                                     \
  template void rmsnorm_backward_weight<T>(T*, const T*, const T*, const T*, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
