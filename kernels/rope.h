// Rotary position embedding, DeepSeek-V3 style: adjacent pairs (2i, 2i+1) of each head are
// rotated by angle pos * theta^(-2i/head_dim). Applied in place to rows of (B, T, H, hd)
// whose row stride is ld (>= H*hd, so q and k can live inside a fused q|k|v buffer).
#pragma once
#include <cstdint>

namespace tessera::kernels {

// cos/sin tables for positions 0..T-1: (T, hd/2) each. REQUIRES: hd even.
template <typename T>
void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd, double theta);

// x[b, t, h, :] rotated by +angle(t)
template <typename T>
void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table,
                  int64_t B, int64_t T_len, int64_t H, int64_t hd);

// The adjoint of rope_forward (rotation by -angle): turns d(rotated) into d(input), in place.
template <typename T>
void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table,
                   int64_t B, int64_t T_len, int64_t H, int64_t hd);

}  // namespace tessera::kernels
