// Small reductions and element-wise updates used by the trainer.
#pragma once
#include <cstdint>

namespace tessera::kernels {

// Throws std::invalid_argument naming `op` unless rows, cols >= 0 and both strides >= cols.
void check_copy_2d(const char* op, int64_t ld_dst, int64_t ld_src, int64_t rows, int64_t cols);

// sum of x[i]^2, accumulated in double.
template <typename T> double sum_squares(const T* x, int64_t n);
// y += x
template <typename T> void add_inplace(T* y, const T* x, int64_t n);
// x *= s
template <typename T> void scale_inplace(T* x, T s, int64_t n);
// dst[r * ld_dst + c] (+)= src[r * ld_src + c] for r < rows, c < cols; throws
// std::invalid_argument for negative sizes or a stride below cols.
template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
             bool accumulate);

}  // namespace tessera::kernels
