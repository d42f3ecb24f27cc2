// Causal scaled-dot-product attention, per (batch, head), scores scaled by 1/sqrt(hd).
// q, k, v and out are (B, T, H, hd) rows with row strides ld_qkv / ld_out, so they can be
// read from a fused q|k|v projection in place.
//
// As the CUDA kernels (kernels/cuda/attention.h), the forward saves only the logsumexp of each
// score row (lse = max + log(sum exp), B*H*T elements), not the (T, T) probabilities: the
// backward recomputes them from lse, a block of whole rows at a time, so the softmax backward's
// D_t = sum_j P_tj dP_tj comes from those rows (it equals CUDA's rowsum(dO_t * O_t)).
#pragma once
#include <cstdint>

namespace tessera::kernels {

// out = softmax(scale q k^T + causal mask) v; lse[b, h, t] = logsumexp of that score row.
template <typename T>
void attention_forward(T* out, int64_t ld_out,                               // (B, T, H, hd)
                       T* lse,                                               // (B, H, T)
                       const T* q, const T* k, const T* v, int64_t ld_qkv,  // (B, T, H, hd)
                       int64_t B, int64_t T_len, int64_t H, int64_t hd);

// Writes dq, dk, dv (not accumulated). lse is the forward's; scratch receives D.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv,  // (B, T, H, hd)
                        T* scratch,                            // (B, H, T)
                        const T* dout, int64_t ld_out,         // (B, T, H, hd)
                        const T* lse,                          // (B, H, T)
                        const T* q, const T* k, const T* v, int64_t ld_qkv,
                        int64_t B, int64_t T_len, int64_t H, int64_t hd);

}  // namespace tessera::kernels
