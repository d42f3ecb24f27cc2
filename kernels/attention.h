// Causal scaled-dot-product attention, per (batch, head), scores scaled by 1/sqrt(hd).
// q, k, v and out are (B, T, H, hd) rows with row strides ld_qkv / ld_out, so they can be
// read from a fused q|k|v projection in place. Between forward and backward only each row's
// log-sum-exp is kept; the backward recomputes the probabilities (kernels/attention_tiled.h).
#pragma once
#include <cstdint>

namespace tessera::kernels {

// Elements of the backward's scratch (one thread's block buffers).
int64_t attention_scratch_elements(int64_t T_len);

template <typename T>
void attention_forward(T* out, int64_t ld_out,  // (B, T, H, hd)
                       T* lse,                  // (B, H, T) log-sum-exp, saved for backward
                       const T* q, const T* k, const T* v, int64_t ld_qkv,  // (B, T, H, hd)
                       int64_t B, int64_t T_len, int64_t H, int64_t hd);

// Writes dq, dk, dv (not accumulated). out is the forward's output.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv,  // (B, T, H, hd)
                        T* scratch,  // attention_scratch_elements(T_len)
                        const T* dout, const T* out, int64_t ld_out,  // (B, T, H, hd) each
                        const T* lse,  // (B, H, T), the forward's
                        const T* q, const T* k, const T* v, int64_t ld_qkv,
                        int64_t B, int64_t T_len, int64_t H, int64_t hd);

}  // namespace tessera::kernels
