// SwiGLU on CUDA: the launchers of kernels/swiglu.h, same arguments and contracts, over device
// pointers, enqueued on `stream`. a and b are (N, F) with row stride ld_ab (fused [W1; W3]).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// h = silu(a) * b. Throws std::invalid_argument (before any launch) if ld_ab < F.
template <typename T>
void swiglu_forward(T* h,                                   // (N, F)
                    const T* a, const T* b, int64_t ld_ab,  // (N, F) each
                    int64_t N, int64_t F, cudaStream_t stream = nullptr);

// Writes da and db (row stride ld_ab; the padding between rows is not touched).
template <typename T>
void swiglu_backward(T* da, T* db,   // (N, F), row stride ld_ab
                     const T* dh,    // (N, F)
                     const T* a, const T* b, int64_t ld_ab,
                     int64_t N, int64_t F, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
