// Token embedding lookup.
#pragma once
#include <cstdint>

namespace tessera::kernels {

// out[n, :] = table[ids[n], :]
template <typename T>
void embedding_forward(T* out,             // (N, C)
                       const int32_t* ids, // (N)
                       const T* table,     // (V, C)
                       int64_t N, int64_t C);

// dtable[ids[n], :] += dout[n, :]   (accumulates; repeated ids add up)
template <typename T>
void embedding_backward_weight(T* dtable,          // (V, C)
                               const T* dout,      // (N, C)
                               const int32_t* ids, // (N)
                               int64_t N, int64_t C);

}  // namespace tessera::kernels
