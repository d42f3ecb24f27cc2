#include "kernels/vector_ops.h"

#include <vector>

#include "kernels/cpu_loop.h"

namespace tessera::kernels {

namespace {
// Fixed-size chunks summed in chunk order: the result does not depend on the thread count.
constexpr int64_t kSumChunk = 4096;
}  // namespace

template <typename T>
double sum_squares(const T* x, int64_t n) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(chunks);
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = (c + 1) * kSumChunk < n ? (c + 1) * kSumChunk : n;
    double s = 0;
    for (int64_t i = c * kSumChunk; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[c] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void add_inplace(T* y, const T* x, int64_t n) {
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

template <typename T>
void scale_inplace(T* x, T s, int64_t n) {
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

#define TESSERA_INSTANTIATE(T)                                \
  template double sum_squares<T>(const T*, int64_t);          \
  template void add_inplace<T>(T*, const T*, int64_t);        \
  template void scale_inplace<T>(T*, T, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels
