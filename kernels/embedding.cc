#include "kernels/embedding.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu_loop.h"
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

// Parallel over column blocks, rows in order inside: repeated ids add up in a fixed order,
// whatever the thread count.
template <typename T>
void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                               int64_t C) {
  check_ids(ids, N, "embedding_backward_weight");
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
