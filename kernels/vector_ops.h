// Small reductions and element-wise updates used by the trainer.
#pragma once
#include <cstdint>

namespace tessera::kernels {

// sum of x[i]^2, accumulated in double.
template <typename T> double sum_squares(const T* x, int64_t n);
// y += x
template <typename T> void add_inplace(T* y, const T* x, int64_t n);
// x *= s
template <typename T> void scale_inplace(T* x, T s, int64_t n);

}  // namespace tessera::kernels
