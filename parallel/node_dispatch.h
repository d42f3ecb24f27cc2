// Node-aware expert dispatch/combine (DeepSeek-V3 §3.2.2, DeepEP's internode path): across nodes a
// routed token travels ONCE per destination node, then fans out inside the node; the combine
// sums inside the node first, so each token's partial sum crosses back once per node.
//
// Geometry. The EP group has P ranks on M nodes, L = P / M ranks per node, node-contiguous: EP
// rank j is on node j / L with local index j % L. Rank j owns the global experts [j*E/P,
// (j+1)*E/P), so node n owns [n*E/M, (n+1)*E/M) (expert group n under node-limited routing,
// model.n_group = M). Every rank plays three roles for every micro-batch:
//   origin     routes its N tokens (expert_idx, gates: (N, K));
//   forwarder  receives the tokens of the origins with ITS local index (its "rail": one rank per
//              node, as DeepEP sends over IB to the same-index GPU) that need its node, and
//              forwards each to the ranks of its node owning the chosen experts;
//   owner      computes its experts on the rows forwarded to it.
//
// Stages (a = across nodes, all_to_all_v over the EP group with non-zero counts only between
// rail peers; w = within a node, non-zero counts only between ranks of one node):
//   counts      post_node_plan: per destination rank its experts' row counts and, for rail
//               peers, the stage-1 rows: one small int64 all_to_all_v (host memory).
//   dispatch a  rows (S, D) -> forwarders (R, D); the route entries (S, 2K) int32 on the host
//               comm: per row K global expert ids (-1: that slot's expert is on another node)
//               and the K gates' float bit patterns (bits travel unchanged; one message).
//   [forwarder] plan_node_forward (host): the stage-2 send layout, sorted by (expert, row).
//   dispatch w  forwarded rows (T, D) -> owners, source-major (forwarder, local expert) segments
//               like DispatchPlan's.
//   combine w   expert outputs back to the forwarders, landing in the stage-2 send layout.
//   [forwarder] partial(row) = sum over the row's slots of gate * output (or, for gradients,
//               the plain sum): rows (R, D).
//   combine a   partials back to the origins, landing in the stage-1 send layout (S, D); the
//               origin sums a token's per-node partials.
// Backward: the output gradients take the dispatch path (a, then w), the forwarder turns them
// into per-expert gradients gate * dy and gate gradients <dy, output> (it kept the outputs),
// return_gate_grads brings those to the origins (host), and the input gradients take the combine
// path (w, then a) summed without gates.
//
// Local stages ("no communication here") are the caller's: gathering rows by the plans' index
// arrays, the weighted sums. Every function that posts returns the exchange's Work; REQUIRES
// (Comm's contract): buffers stay valid, inputs unmodified, until it completes.
//
// Argument checks are local and throw std::invalid_argument before anything is posted; a rank
// that throws leaves its peers' collective unmatched, so every rank should pass arguments that
// are equally valid.
//
// Thread-safety: plans are plain values; the functions post on the given communicators.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "parallel/comm.h"
#include "parallel/expert_dispatch.h"
#include "parallel/rank_grid.h"

namespace tessera::parallel {

struct NodeGeometry {
  int ep_size = 1;          // P
  int ep_rank = 0;
  int ranks_per_node = 1;   // L: EP ranks per node (P % L == 0)
  int64_t n_experts = 0;    // E (E % P == 0)
  int64_t top_k = 1;        // K

  int nodes() const { return ep_size / ranks_per_node; }
  int node_of(int rank) const { return rank / ranks_per_node; }
  int local_of(int rank) const { return rank % ranks_per_node; }
  int64_t experts_per_rank() const { return n_experts / ep_size; }
  int owner_of(int64_t expert) const { return static_cast<int>(expert / experts_per_rank()); }
  int node_of_expert(int64_t expert) const { return node_of(owner_of(expert)); }
  // The EP rank on `node` with my local index: my forwarder there (and the origin I serve).
  int rail_peer(int node) const { return node * ranks_per_node + local_of(ep_rank); }
};

// Throws std::invalid_argument naming the field unless 1 <= L, P % L == 0, 0 <= rank < P,
// E >= 1, E % P == 0, K >= 1.
void check_node_geometry(const NodeGeometry& g, const char* where);

// How one EP group lies on the nodes of `grid` (its members in EP order, world ranks).
struct EpNodeSpan {
  int nodes = 1;           // distinct nodes holding members
  int ranks_per_node = 0;  // members per node when regular
  // Each node holds one contiguous run of the group (in EP order) and every node as many
  // members: what node-aware dispatch and node-limited routing need.
  bool regular = true;
};
EpNodeSpan ep_node_span(const RankGrid& grid, const std::vector<int>& ep_group);

// Origin side, from this rank's routing alone (no communication).
struct NodeSendPlan {
  std::vector<int64_t> expert_counts;    // (E) chosen (token, slot) pairs per global expert
  std::vector<int64_t> rows_to_node;     // (M) stage-1 rows: tokens needing that node
  // (S) the token each stage-1 row carries: node-major, tokens ascending inside a node.
  std::vector<int32_t> token_of_row;
  // (N*M) the stage-1 row of (token, node), or S (one past the rows: the caller's zero row)
  // where the token needs no expert there. Sums a token's per-node partials.
  std::vector<int32_t> row_of_token_node;
  std::vector<int32_t> entries;          // (S, 2K) the route entries (see the file comment)
  int64_t total_rows() const { return static_cast<int64_t>(token_of_row.size()); }
};
// expert_idx, gates: (N, K), host memory. Throws std::invalid_argument for an expert outside
// [0, E) or a size mismatch.
NodeSendPlan plan_node_send(const NodeGeometry& g, std::span<const int32_t> expert_idx,
                            std::span<const float> gates, int64_t tokens);

// Who sends how many rows to whom in both stages, once the counts arrived. One plan serves a
// micro-batch's forward and backward.
struct NodePlan {
  NodeGeometry geometry;
  std::vector<int64_t> across_send_rows;  // (P) stage-1 rows to each rank (rail peers only)
  std::vector<int64_t> across_recv_rows;  // (P) stage-1 rows from each rank (rail peers only)
  std::vector<int64_t> within_recv_rows;  // (P) stage-2 rows from each rank (my node only)
  // The owner's receive buffer, source-major: P * E/P entries, segment s * E/P + l holding the
  // rows forwarder s sends for local expert l (empty ones included, as DispatchPlan::segments).
  std::vector<ExpertSegment> segments;
  std::vector<int64_t> local_expert_rows;  // (E/P)

  int64_t total_across_send() const;  // S
  int64_t total_across_recv() const;  // R
  int64_t total_within_recv() const;  // rows my experts compute
};

// The count exchange in flight (Comm's non-blocking contract); owns its buffers. Move-only.
class PendingNodePlan {
 public:
  PendingNodePlan() = default;
  // Waits for the exchange, then lays the plan out. REQUIRES: posted and not finished yet.
  NodePlan finish();
  const Work& work() const { return work_; }
  bool posted() const { return posted_; }

 private:
  friend PendingNodePlan post_node_plan(Comm&, const NodeGeometry&, const NodeSendPlan&);
  Work work_;
  bool posted_ = false;
  NodeGeometry g_;
  std::vector<int64_t> rows_to_node_, out_, in_;
};

// Collective over `ep_host` (the EP group; host memory): posts the count exchange, (E/P + 1)
// int64 per destination rank.
PendingNodePlan post_node_plan(Comm& ep_host, const NodeGeometry& g, const NodeSendPlan& send);

// Forwarder side, from the received route entries (R, 2K): the stage-2 layout.
struct NodeForwardPlan {
  std::vector<int64_t> send_rows;      // (P) stage-2 rows to each owner (my node only)
  std::vector<int32_t> row_of_pos;     // (T) the stage-1 receive row each stage-2 row copies
  // (R*K) the stage-2 row of (row, slot), or T (the caller's zero row) for a slot whose expert is
  // on another node.
  std::vector<int32_t> pos_of_entry;
  std::vector<float> gates;            // (R*K) the slot's gate, 0 where the expert is elsewhere
  int64_t total_send_rows() const { return static_cast<int64_t>(row_of_pos.size()); }
};
// Throws std::invalid_argument if the entries' size is not R * 2K or an entry names an expert
// outside this node.
NodeForwardPlan plan_node_forward(const NodePlan& plan, std::span<const int32_t> entries);

// Stage 1. send: (S, width) in NodeSendPlan's row order; recv: (R, width), source-major.
Work dispatch_across(Comm& ep, const NodePlan& plan, std::span<const float> send,
                     std::span<float> recv, int64_t width);
// Its inverse and adjoint: (R, width) back into the (S, width) send layout.
Work combine_across(Comm& ep, const NodePlan& plan, std::span<const float> recv_layout,
                    std::span<float> send_layout, int64_t width);
// The route entries along stage 1: (S, 2K) -> (R, 2K) int32.
Work dispatch_route_entries(Comm& ep_host, const NodePlan& plan, std::span<const int32_t> send,
                            std::span<int32_t> recv);
// Gate gradients back along stage 1: (R, K) -> (S, K), slot-aligned with the entries.
Work return_gate_grads(Comm& ep_host, const NodePlan& plan, std::span<const float> recv_layout,
                       std::span<float> send_layout);
// Stage 2. send: (T, width) in NodeForwardPlan's order; recv: (total_within_recv, width) as
// plan.segments says.
Work dispatch_within(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                     std::span<const float> send, std::span<float> recv, int64_t width);
// Its inverse and adjoint: the owner's rows back into the forwarder's (T, width) layout.
Work combine_within(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                    std::span<const float> expert_layout, std::span<float> forward_layout,
                    int64_t width);

// The forward's row movements for packed rows (parallel/row_codec.h), `words` 32-bit words per
// row; checks as the float versions. (The stage-1 combine carries fp32 partial sums: MoeBlock.)
Work dispatch_across_packed(Comm& ep, const NodePlan& plan, std::span<const uint32_t> send,
                            std::span<uint32_t> recv, int64_t words);
Work dispatch_within_packed(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                            std::span<const uint32_t> send, std::span<uint32_t> recv,
                            int64_t words);
Work combine_within_packed(Comm& ep, const NodePlan& plan, const NodeForwardPlan& forward,
                           std::span<const uint32_t> expert_layout,
                           std::span<uint32_t> forward_layout, int64_t words);

// Traffic accounting: of a per-EP-rank count vector, the part addressed to ranks on another node
// than `ep_rank` (node = rank / ranks_per_node).
int64_t off_node(std::span<const int64_t> per_rank, int ep_rank, int ranks_per_node);

}  // namespace tessera::parallel
