// Linear map without bias: y = x W^T, W stored [out, in]. All three go through gemm().
#pragma once
#include <cstdint>

namespace tessera::kernels {

template <typename T>
void linear_forward(T* y,        // (N, O)
                    const T* x,  // (N, I)
                    const T* W,  // (O, I)
                    int64_t N, int64_t I, int64_t O);

// dx = dy W  (written, or added when accumulate)
template <typename T>
void linear_backward_input(T* dx,        // (N, I)
                           const T* dy,  // (N, O)
                           const T* W,   // (O, I)
                           int64_t N, int64_t I, int64_t O, bool accumulate = false);

// dW += dy^T x
template <typename T>
void linear_backward_weight(T* dW,        // (O, I)
                            const T* dy,  // (N, O)
                            const T* x,   // (N, I)
                            int64_t N, int64_t I, int64_t O);

}  // namespace tessera::kernels
