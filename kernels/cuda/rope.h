// RoPE on CUDA: the launchers of kernels/rope.h, same arguments and contracts, over device
// pointers, enqueued on `stream`. The cos/sin tables are built on the host with
// kernels::rope_table and copied to the device once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// x[b, t, h, :] rotated by +angle(t), in place; rows of (B, T, H, hd) with row stride ld.
// Throws std::invalid_argument (before any launch) unless hd is even and > 0 and ld >= H*hd.
template <typename T>
void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table,  // tables (T, hd/2)
                  int64_t B, int64_t T_len, int64_t H, int64_t hd, cudaStream_t stream = nullptr);

// The adjoint of rope_forward (rotation by -angle), in place.
template <typename T>
void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table,
                   int64_t B, int64_t T_len, int64_t H, int64_t hd, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
