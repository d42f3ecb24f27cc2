// RMSNorm on CUDA: the launchers of kernels/rmsnorm.h, same arguments and contracts, over
// device pointers, enqueued on `stream` (asynchronous: errors of the running kernel surface
// at the next synchronising call).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

template <typename T>
void rmsnorm_forward(T* y,          // (N, C)
                     T* rstd,       // (N)
                     const T* x,    // (N, C)
                     const T* w,    // (C)
                     int64_t N, int64_t C, T eps, cudaStream_t stream = nullptr);

// dx written, or added to when accumulate.
template <typename T>
void rmsnorm_backward_input(T* dx,         // (N, C)
                            const T* dy,   // (N, C)
                            const T* x,    // (N, C)
                            const T* w,    // (C)
                            const T* rstd, // (N)
                            int64_t N, int64_t C, bool accumulate = false,
                            cudaStream_t stream = nullptr);

// dw += sum_n dy[n] * x[n] * rstd[n], each column summed over rows in row order (as on CPU).
template <typename T>
void rmsnorm_backward_weight(T* dw,          // (C)
                             const T* dy,    // (N, C)
                             const T* x,     // (N, C)
                             const T* rstd,  // (N)
                             int64_t N, int64_t C, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
