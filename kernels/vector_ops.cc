#include "kernels/vector_ops.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"

namespace tessera::kernels {

void check_copy_2d(const char* op, int64_t ld_dst, int64_t ld_src, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || ld_dst < cols || ld_src < cols) {
    throw std::invalid_argument(std::string(op) + ": rows " + std::to_string(rows) + ", cols " +
                                std::to_string(cols) + ", ld_dst " + std::to_string(ld_dst) +
                                ", ld_src " + std::to_string(ld_src) +
                                " (sizes must be >= 0 and strides >= cols)");
  }
}

namespace {
// Fixed-size chunks summed in chunk order: the result does not depend on the thread count.
constexpr int64_t kSumChunk = 4096;

// One chunk's sum of squares in double, by cpu::lane_sum (the same on every ISA).
template <typename T>
TESSERA_CPU_CLONES double chunk_sum_squares(const T* x, int64_t n) {
  return cpu::lane_sum<double>(
      n, [&](int64_t i) { return static_cast<double>(x[i]) * static_cast<double>(x[i]); });
}

template <typename T>
TESSERA_CPU_CLONES void add_chunk(T* y, const T* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

template <typename T>
TESSERA_CPU_CLONES void scale_chunk(T* x, T s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}
}  // namespace

template <typename T>
double sum_squares(const T* x, int64_t n) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(chunks);
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = (c + 1) * kSumChunk < n ? (c + 1) * kSumChunk : n;
    partial[c] = chunk_sum_squares(x + c * kSumChunk, end - c * kSumChunk);
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void add_inplace(T* y, const T* x, int64_t n) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i = c * kSumChunk;
    add_chunk(y + i, x + i, n - i < kSumChunk ? n - i : kSumChunk);
  }
}

template <typename T>
void scale_inplace(T* x, T s, int64_t n) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i = c * kSumChunk;
    scale_chunk(x + i, s, n - i < kSumChunk ? n - i : kSumChunk);
  }
}

template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
             bool accumulate) {
  check_copy_2d("copy_2d", ld_dst, ld_src, rows, cols);
#pragma omp parallel for if (rows * cols >= cpu::kMinParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dst + r * ld_dst;
    const T* s = src + r * ld_src;
    if (accumulate) {
      for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
    } else {
      std::copy(s, s + cols, d);
    }
  }
}

#define TESSERA_INSTANTIATE(T)                                \
  template double sum_squares<T>(const T*, int64_t);          \
  template void add_inplace<T>(T*, const T*, int64_t);        \
  template void scale_inplace<T>(T*, T, int64_t);             \
  template void copy_2d<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, bool);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
