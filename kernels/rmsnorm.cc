#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/gemm.h"
#include "kernels/math/rmsnorm.h"

namespace tessera::kernels {

namespace {

// float rows: math/rmsnorm.h's formulas vectorised (kernels/cpu_simd.h), each row sum in
// cpu::kLanes partial sums (lane l sums the columns c = l mod kLanes, in order), then the
// partial sums in lane order.
TESSERA_CPU_CLONES void rmsnorm_forward_row_f32(float* y, float* rstd, const float* x,
                                                const float* w, int64_t C, float eps) {
  float part[cpu::kLanes] = {};
  const int64_t full = C / cpu::kLanes * cpu::kLanes;
  for (int64_t c0 = 0; c0 < full; c0 += cpu::kLanes) {
#pragma omp simd
    for (int l = 0; l < cpu::kLanes; ++l) part[l] += x[c0 + l] * x[c0 + l];
  }
  for (int64_t c = full; c < C; ++c) part[c - full] += x[c] * x[c];
  float ss = 0;
  for (int l = 0; l < cpu::kLanes; ++l) ss += part[l];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
  *rstd = r;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * r * w[c];
}

TESSERA_CPU_CLONES void rmsnorm_backward_input_row_f32(float* dx, const float* dy,
                                                       const float* x, const float* w, float r,
                                                       int64_t C, bool accumulate) {
  float part[cpu::kLanes] = {};
  const int64_t full = C / cpu::kLanes * cpu::kLanes;
  for (int64_t c0 = 0; c0 < full; c0 += cpu::kLanes) {
#pragma omp simd
    for (int l = 0; l < cpu::kLanes; ++l) part[l] += dy[c0 + l] * w[c0 + l] * x[c0 + l];
  }
  for (int64_t c = full; c < C; ++c) part[c - full] += dy[c] * w[c] * x[c];
  float dot = 0;
  for (int l = 0; l < cpu::kLanes; ++l) dot += part[l];
  const float coef = dot * r * r * r / static_cast<float>(C);
  if (accumulate) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] = dx[c] + (r * w[c] * dy[c] - coef * x[c]);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dx[c] = r * w[c] * dy[c] - coef * x[c];
  }
}

// Columns of one float weight-gradient block: up to this many, so a block reads its rows once
// (math's 64-column blocks read dy and x once per block).
constexpr int64_t kWideBlock = 1024;

// math::rmsnorm_backward_weight_cols for columns [c0, c1), c1 - c0 <= kWideBlock: each column
// summed over the rows in row order (the same operations in the same order), vectorised.
TESSERA_CPU_CLONES void rmsnorm_backward_weight_cols_f32(float* dw, const float* dy,
                                                         const float* x, const float* rstd,
                                                         int64_t N, int64_t C, int64_t c0,
                                                         int64_t c1) {
  alignas(64) float acc[kWideBlock];
  const int64_t width = c1 - c0;
  for (int64_t i = 0; i < width; ++i) acc[i] = 0;
  for (int64_t n = 0; n < N; ++n) {
    const float r = rstd[n];
    const float* dy_row = dy + n * C + c0;
    const float* x_row = x + n * C + c0;
#pragma omp simd
    for (int64_t i = 0; i < width; ++i) acc[i] += dy_row[i] * x_row[i] * r;
  }
  for (int64_t i = 0; i < width; ++i) dw[c0 + i] += acc[i];
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
    // One block per thread where the work is worth threads (columns in multiples of 16).
    const int64_t threads = N * C >= cpu::kMinParallelWork ? cpu_threads() : 1;
    int64_t width = (C + threads - 1) / threads;
    width = std::min(kWideBlock, (width + 15) / 16 * 16);
    const int64_t blocks = (C + width - 1) / width;
#pragma omp parallel for if (blocks > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * width;
      rmsnorm_backward_weight_cols_f32(dw, dy, x, rstd, N, C, c0, std::min(C, c0 + width));
    }
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
