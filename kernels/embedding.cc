#include "kernels/embedding.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"
#include "kernels/gemm.h"
#include "kernels/math/scalar.h"

namespace tessera::kernels {

namespace {
void check_ids(const int32_t* ids, int64_t N, const char* op) {
  for (int64_t n = 0; n < N; ++n) {
    if (ids[n] < 0) {
      throw std::out_of_range(std::string(op) + ": negative token id " + std::to_string(ids[n]) +
                              " at position " + std::to_string(n));
    }
  }
}
}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C) {
  check_ids(ids, N, "embedding_forward");
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    std::memcpy(out + n * C, table + int64_t{ids[n]} * C, sizeof(T) * C);
  }
}

namespace {

// dtable[ids[n]][c0:c1] += dout[n][c0:c1] for every row n in order, in float vectors (the
// scalar loop below, now double's only, took 1.0 ms a call on bench-moe in float, this one
// 0.12 ms: Zen 5, 1 thread).
TESSERA_CPU_CLONES void scatter_add_columns_f32(float* dtable, const float* dout,
                                                const int32_t* ids, int64_t N, int64_t C,
                                                int64_t c0, int64_t c1) {
  for (int64_t n = 0; n < N; ++n) {
    float* dst = dtable + int64_t{ids[n]} * C;
    const float* src = dout + n * C;
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
  }
}

}  // namespace

// Parallel over blocks of columns, one a thread, rows in order inside: repeated ids add up in a
// fixed order, whatever the thread count (blocks of rows would add a repeated id's rows in
// another order).
template <typename T>
void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                               int64_t C) {
  check_ids(ids, N, "embedding_backward_weight");
  if constexpr (std::is_same_v<T, float>) {
    const int64_t threads = N * C >= cpu::kMinParallelWork ? cpu_threads() : 1;
    const int64_t per_thread = (C + threads - 1) / threads;
    const int64_t width = std::max<int64_t>(16, (per_thread + 15) / 16 * 16);  // whole lines
    const int64_t blocks = (C + width - 1) / width;
#pragma omp parallel for if (blocks > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      scatter_add_columns_f32(dtable, dout, ids, N, C, blk * width,
                              std::min(C, (blk + 1) * width));
    }
    return;
  }
  const int64_t n_blocks = (C + math::kColumnBlock - 1) / math::kColumnBlock;
#pragma omp parallel for if (N * C >= cpu::kMinParallelWork)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t c0 = blk * math::kColumnBlock;
    const int64_t c1 = c0 + math::kColumnBlock < C ? c0 + math::kColumnBlock : C;
    for (int64_t n = 0; n < N; ++n) {
      T* dst = dtable + int64_t{ids[n]} * C;
      const T* src = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                                          \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t); \
  template void embedding_backward_weight<T>(T*, const T*, const int32_t*, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
