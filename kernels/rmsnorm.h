// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w.
#pragma once
#include <cstdint>

namespace tessera::kernels {

template <typename T>
void rmsnorm_forward(T* y,          // (N, C)
                     T* rstd,       // (N)  saved for backward: 1/sqrt(mean(x^2)+eps)
                     const T* x,    // (N, C)
                     const T* w,    // (C)
                     int64_t N, int64_t C, T eps);

// dx written, or added to when accumulate (for residual streams).
template <typename T>
void rmsnorm_backward_input(T* dx,         // (N, C)
                            const T* dy,   // (N, C)
                            const T* x,    // (N, C)
                            const T* w,    // (C)
                            const T* rstd, // (N)
                            int64_t N, int64_t C, bool accumulate = false);

// dw += sum_n dy[n] * x[n] * rstd[n]
template <typename T>
void rmsnorm_backward_weight(T* dw,          // (C)
                             const T* dy,    // (N, C)
                             const T* x,     // (N, C)
                             const T* rstd,  // (N)
                             int64_t N, int64_t C);

}  // namespace tessera::kernels
