// Causal attention of one (batch, head) pair on one thread, for kernels/attention.cc: the
// products in register tiles (at attention's shapes, e.g. 4 x 32 x 32, a library GEMM spends
// most of its time packing operands and dispatching), the softmax row by row between them, and
// no (T, T) matrix anywhere: the forward saves each row's log-sum-exp and the backward recomputes
// the probabilities block by block (FlashAttention-2's order) in buffers that stay in L1
// (writing and reading back B*H*T*T probabilities cost more than recomputing them).
// float runs at the machine's vector width; double (gradient checks) runs the same algorithm.
#pragma once
#include <cstdint>

namespace tessera::kernels::detail {

// q, k, v, out point at the pair's first element; rows are ld_qkv / ld_out apart. lse (T):
// each row's log sum_j exp(scale q.k_j) over j <= t.
template <typename E>
void attention_forward_pair(E* out, int64_t ld_out, E* lse, const E* q, const E* k, const E* v,
                            int64_t ld_qkv, int64_t T, int64_t hd, E scale);

// Writes dq, dk, dv (not accumulated). out is the forward's output (rows ld_out apart, as
// dout's); scratch holds attention_pair_scratch_elements(T).
template <typename E>
void attention_backward_pair(E* dq, E* dk, E* dv, int64_t ld_dqkv, E* scratch, const E* dout,
                             const E* out, int64_t ld_out, const E* lse, const E* q, const E* k,
                             const E* v, int64_t ld_qkv, int64_t T, int64_t hd, E scale);

int64_t attention_pair_scratch_elements(int64_t T);

}  // namespace tessera::kernels::detail
