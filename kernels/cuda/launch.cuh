// Launch helpers shared by the CUDA backend's .cu files (not part of the public API).
//
// Design: every kernel here is a thin __global__ wrapper that maps one thread to one element
// or one row and calls the TESSERA_HD math in kernels/math/*.h, the same functions the CPU
// loops call. Correctness over speed: a row per thread leaves bandwidth on the table for wide
// rows (rmsnorm, cross-entropy); faster kernels may replace a launcher later, and must match
// the same math (the kernels_cuda tests compare every launcher with the CPU op).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/device.h"

namespace tessera::kernels::cuda::detail {

constexpr int kThreadsPerBlock = 128;

// Blocks covering `work` threads; throws if the grid cannot hold them.
inline unsigned int blocks_for(int64_t work, const char* op) {
  const int64_t blocks = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
  if (blocks > 0x7fffffff) {
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(work) +
                                " threads exceed one CUDA grid");
  }
  return static_cast<unsigned int>(blocks);
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Kernels that meet an out-of-range index held in device memory write NaN instead of reading
// out of bounds: the host cannot check such indices without a synchronising copy.
__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) {
  return __longlong_as_double(0x7ff8000000000000LL);
}

template <typename T>
__device__ void fill_nan(T* row, int64_t n) {
  for (int64_t i = 0; i < n; ++i) row[i] = quiet_nan(T());
}

}  // namespace tessera::kernels::cuda::detail
