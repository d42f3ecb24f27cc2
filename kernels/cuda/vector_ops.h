// Element-wise updates and reductions on CUDA: the launchers of kernels/vector_ops.h plus copy,
// fill and sum, over device pointers, enqueued on `stream`.
//
// The reductions return a double to the host, so they synchronise `stream`. They accumulate in
// double over fixed chunks of kReduceChunk elements (each summed in a fixed order), then add the
// chunk sums in chunk order: the result is deterministic and independent of the launch
// configuration, though not bitwise the CPU's (whose order differs).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

constexpr int64_t kReduceChunk = 4096;

// Every function throws std::invalid_argument (before any launch) if n < 0.

// dst = src (device to device; the ranges must not overlap unless dst == src).
template <typename T> void copy(T* dst, const T* src, int64_t n, cudaStream_t stream = nullptr);
// x = value
template <typename T> void fill(T* x, T value, int64_t n, cudaStream_t stream = nullptr);
// y += x
template <typename T>
void add_inplace(T* y, const T* x, int64_t n, cudaStream_t stream = nullptr);
// kernels/vector_ops.h's copy_2d: cudaMemcpy2DAsync, or a thread per element when accumulating.
template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
             bool accumulate, cudaStream_t stream = nullptr);
// x *= s
template <typename T> void scale_inplace(T* x, T s, int64_t n, cudaStream_t stream = nullptr);

// sum of x[i], and of x[i]^2, in double; blocks until `stream` has run them.
template <typename T> double sum(const T* x, int64_t n, cudaStream_t stream = nullptr);
template <typename T> double sum_squares(const T* x, int64_t n, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
