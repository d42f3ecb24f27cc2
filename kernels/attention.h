// Causal scaled-dot-product attention, per (batch, head), scores scaled by 1/sqrt(hd).
// q, k, v and out are (B, T, H, hd) rows with row strides ld_qkv / ld_out, so they can be
// read from a fused q|k|v projection in place. The products go through gemm().
#pragma once
#include <cstdint>

namespace tessera::kernels {

template <typename T>
void attention_forward(T* out, int64_t ld_out,  // (B, T, H, hd)
                       T* probs,                // (B, H, T, T) softmax, saved for backward
                       const T* q, const T* k, const T* v, int64_t ld_qkv,  // (B, T, H, hd)
                       int64_t B, int64_t T_len, int64_t H, int64_t hd);

// Writes dq, dk, dv (not accumulated).
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv,  // (B, T, H, hd)
                        T* scratch,                            // (T, T) workspace
                        const T* dout, int64_t ld_out,         // (B, T, H, hd)
                        const T* probs,                        // (B, H, T, T)
                        const T* q, const T* k, const T* v, int64_t ld_qkv,
                        int64_t B, int64_t T_len, int64_t H, int64_t hd);

}  // namespace tessera::kernels
