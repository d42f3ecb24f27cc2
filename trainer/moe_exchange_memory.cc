#include "trainer/moe_exchange_memory.h"

#include <algorithm>
#include <initializer_list>

namespace tessera::trainer {

namespace {

// Bytes of one packed row in the widest of the packed formats given (0: all fp32, not packed).
int64_t packed_row_bytes(int64_t dim, std::initializer_list<parallel::RowFormat> formats) {
  int64_t bytes = 0;
  for (parallel::RowFormat f : formats) {
    if (f != parallel::RowFormat::kFp32) bytes = std::max(bytes, parallel::row_bytes(f, dim));
  }
  return bytes;
}

}  // namespace

int64_t moe_exchange_bytes(const MoeExchangeShape& s) {
  const int64_t N = s.tokens, D = s.dim, K = s.top_k, E = s.n_experts, NK = N * K;
  if (s.ep == 1) return 0;  // round trips only
  // Expert-side rows (moe_block.cc max_expert_rows): every peer's tokens, at most once per
  // local expert.
  const int64_t R = s.ep * N * std::min(K, E / s.ep);
  // The backward reuses the forward's buffers: dispatch grads x_* (node-aware: x2_*), combine
  // grads y_*; a buffer holds the wider of the two formats.
  const int64_t to_experts = packed_row_bytes(D, {s.dispatch, s.dispatch_grads});
  const int64_t from_experts = packed_row_bytes(D, {s.combine, s.combine_grads});
  if (!s.node_aware) {
    // x_send (N*k) and x_recv (R); y_send (R) and y_recv (N*k).
    return (NK + R) * (to_experts + from_experts);
  }
  // Node-aware (moe_block.cc Carve's worst cases): S rows cross to min(nodes, k) nodes per token,
  // a forwarder receives Rw = nodes * N and sends T = Rw * min(k, experts per node) within its
  // node. The first hop packs the forward dispatch only (its backward stays fp32); the second
  // hop (x2_*) and the combine within the node (y_*) both directions.
  const int64_t M = s.ep / s.ep_ranks_per_node, S = N * std::min(M, K), Rw = M * N,
                T = Rw * std::min(K, E / M);
  const int64_t first_hop = packed_row_bytes(D, {s.dispatch});
  return (S + Rw) * first_hop + (T + R) * (to_experts + from_experts);
}

}  // namespace tessera::trainer
