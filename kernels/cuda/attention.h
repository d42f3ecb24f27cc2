// Causal attention on CUDA: our own tiled kernels with an online softmax (flash-attention
// style), scale 1/sqrt(hd), over device pointers, enqueued on `stream`.
//
// Unlike kernels/attention.h, which saves the whole (B, H, T, T) softmax, the forward saves only
// the logsumexp of each score row, lse = m + log(l), so the saved state is B*H*T elements; the
// backward recomputes P = exp(scale q k^T - lse) tile by tile, with D_i = rowsum(dO_i * O_i)
// (B*H*T elements of scratch) standing in for sum_j P_ij dP_ij.
//
// Blocks only visit key tiles at or left of the diagonal (fully masked tiles are skipped), and
// nothing is accumulated with atomics: dk/dv come from one block per (b, h, key tile) looping
// over the query tiles that see it, dq from one block per (b, h, query tile) looping over its
// key tiles, so results are deterministic (bitwise repeatable run to run).
//
// Layout (as kernels/attention.h): q, k, v are (B, T, H, hd) rows with row stride ld_qkv, so they
// can be slices of a fused q|k|v buffer; out/dout use ld_out, dq/dk/dv ld_dqkv.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// The largest head dimension the kernels take: their tiles of q, k, v, o (and gradients) live in
// shared memory, which at hd = 256 is ~200 KiB per block on sm_90.
constexpr int64_t kAttentionMaxHeadDim = 256;

// out = softmax(scale q k^T + causal mask) v; lse[b, h, t] = logsumexp of that score row.
// Throws std::invalid_argument (before any launch) unless B, T_len, H >= 0,
// 1 <= hd <= kAttentionMaxHeadDim, ld_out >= H*hd and ld_qkv >= H*hd; std::runtime_error if the
// device cannot give a block the shared memory the tiles need.
template <typename T>
void attention_forward(T* out, int64_t ld_out,                               // (B, T, H, hd)
                       T* lse,                                               // (B, H, T)
                       const T* q, const T* k, const T* v, int64_t ld_qkv,  // (B, T, H, hd)
                       int64_t B, int64_t T_len, int64_t H, int64_t hd,
                       cudaStream_t stream = nullptr);

// Writes dq, dk, dv (not accumulated). out and lse are the forward's; scratch receives D.
// Same checks as the forward, plus ld_dqkv >= H*hd.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv,            // (B, T, H, hd)
                        T* scratch,                                      // (B, H, T)
                        const T* dout, const T* out, int64_t ld_out,     // (B, T, H, hd)
                        const T* lse,                                    // (B, H, T)
                        const T* q, const T* k, const T* v, int64_t ld_qkv,
                        int64_t B, int64_t T_len, int64_t H, int64_t hd,
                        cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda
