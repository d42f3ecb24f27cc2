// SwiGLU gate: h = silu(a) * b, where a = x W1^T and b = x W3^T. a and b are (N, F) with row
// stride ld_ab, so they can be the two halves of a fused [W1; W3] projection.
#pragma once
#include <cstdint>

namespace tessera::kernels {

template <typename T>
void swiglu_forward(T* h,                             // (N, F)
                    const T* a, const T* b, int64_t ld_ab,  // (N, F) each
                    int64_t N, int64_t F);

// Writes da and db (same layout as a and b).
template <typename T>
void swiglu_backward(T* da, T* db,                    // (N, F), row stride ld_ab
                     const T* dh,                     // (N, F)
                     const T* a, const T* b, int64_t ld_ab,
                     int64_t N, int64_t F);

}  // namespace tessera::kernels
