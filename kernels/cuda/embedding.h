// Token embedding on CUDA: the launchers of kernels/embedding.h, same arguments and contracts,
// over device pointers, enqueued on `stream`, plus the vocabulary size V (the CPU functions do
// not take it): ids live on the device and cannot be checked on the host without a sync, so the
// kernels check them against V instead. An id outside [0, V) makes its output row NaN (forward)
// or row 0 of dtable NaN (backward: the gradient turns non-finite, which the gradient-norm check
// reports) instead of reading or writing out of bounds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// out[n, :] = table[ids[n], :]. Throws std::invalid_argument (before any launch) if N < 0,
// C < 0 or V < 1.
template <typename T>
void embedding_forward(T* out,              // (N, C)
                       const int32_t* ids,  // (N)
                       const T* table,      // (V, C)
                       int64_t N, int64_t C, int64_t V, cudaStream_t stream = nullptr);

// dtable[ids[n], :] += dout[n, :] (accumulates). A thread per column adds the rows in order, so
// repeated ids add up in the CPU's order and the result is deterministic. Same checks.
template <typename T>
void embedding_backward_weight(T* dtable,           // (V, C)
                               const T* dout,       // (N, C)
                               const int32_t* ids,  // (N)
                               int64_t N, int64_t C, int64_t V, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
