// Expert dispatch/combine: moves routed token rows to the ranks that own their experts and back,
// over the expert-parallel (EP) group (DESIGN.md "Overlap of expert all-to-all with compute").
//
// Layout. The EP group has P = ep.size() ranks and n_experts E, E % P == 0; rank j owns the
// global experts [j*E/P, (j+1)*E/P), and "local expert" l of rank j is global expert j*E/P + l.
// Each rank's routed rows are packed EXPERT-MAJOR (the send layout): counts[0] rows of global
// expert 0, then counts[1] rows of expert 1, ... Since a rank's experts are consecutive, the rows
// bound for rank j are one contiguous block. The receive layout is SOURCE-MAJOR: all rows from
// EP rank 0 (its rows for my local expert 0, then local expert 1, ...), then from rank 1, ...;
// exactly what one all_to_all_v delivers. DispatchPlan::segments describes it.
//
// dispatch() moves rows send layout -> receive layout; combine() is its inverse (and, rows being
// only moved, also its adjoint): receive layout -> send layout. Forward: dispatch the tokens,
// run the experts, combine the outputs. Backward: dispatch the output gradients, run the experts'
// backward, combine the input gradients. One plan serves a micro-batch's forward and backward.
//
// Local stages ("no communication here") are the caller's: building the expert-major send buffer
// and consuming the receive buffer segment by segment.
//
// Argument checks are local: they throw std::invalid_argument before anything is posted. A rank
// that throws leaves its peers' collective unmatched (Comm's contract), so every rank should pass
// arguments that are equally valid.
//
// Thread-safety: plans are plain values; the functions post on `ep` (see Comm's ordering rule).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "parallel/comm.h"

namespace tessera::parallel {

// Rows of one local expert that arrived from one source rank, contiguous in the receive buffer.
struct ExpertSegment {
  int64_t local_expert = 0;  // 0 .. E/P-1
  int source = 0;            // EP rank the rows came from
  int64_t offset = 0;        // first row in the receive buffer
  int64_t rows = 0;
  bool operator==(const ExpertSegment&) const = default;
};

// Who sends how many rows to whom, for one micro-batch of one MoE layer; computed once in the
// forward and reused for that micro-batch's backward (gradients flow the same paths in reverse).
struct DispatchPlan {
  int ep_size = 1, ep_rank = 0;
  int64_t n_experts = 0, experts_per_rank = 0;
  std::vector<int64_t> send_rows;  // (P) rows this rank sends to each EP rank
  std::vector<int64_t> recv_rows;  // (P) rows this rank receives from each EP rank
  // The receive buffer's layout, in buffer order: P * E/P entries, segment s * E/P + l holding
  // source s's rows for local expert l (empty segments included, so the index is arithmetic).
  std::vector<ExpertSegment> segments;
  std::vector<int64_t> local_expert_rows;  // (E/P) total rows per local expert, over all sources

  int64_t total_send_rows() const;
  int64_t total_recv_rows() const;
  const ExpertSegment& segment(int source, int64_t local_expert) const {
    return segments[static_cast<size_t>(source * experts_per_rank + local_expert)];
  }
};

// The count exchange of a plan, posted and not yet waited for: the caller overlaps it with local
// work (DESIGN.md: the count exchange before a dispatch must not block), then finish()es it.
// Owns copies of the counts, so the caller's vector may change meanwhile. Move-only.
class PendingDispatchPlan {
 public:
  PendingDispatchPlan() = default;
  // Waits for the exchange, then lays the plan out. REQUIRES: posted and not finished yet.
  DispatchPlan finish();
  const Work& work() const { return work_; }
  bool posted() const { return posted_; }

 private:
  friend PendingDispatchPlan post_dispatch_plan(Comm&, std::span<const int64_t>, int64_t);
  Work work_;
  bool posted_ = false;
  int ep_size_ = 1, ep_rank_ = 0;
  int64_t n_experts_ = 0;
  std::vector<int64_t> counts_, from_;
};

// Collective over `ep`: posts the exchange of the per-expert counts (counts.size() == n_experts,
// expert-major send layout as above): one small all_to_all_v of int64.
// Throws std::invalid_argument naming the problem if n_experts < 1, n_experts % ep.size() != 0,
// counts has the wrong size or a count is negative.
PendingDispatchPlan post_dispatch_plan(Comm& ep, std::span<const int64_t> counts,
                                       int64_t n_experts);
// post_dispatch_plan(...).finish(): blocking.
DispatchPlan plan_dispatch(Comm& ep, std::span<const int64_t> counts, int64_t n_experts);

// Sends rows to their experts' owners. send: (total_send_rows, width), expert-major;
// recv: (total_recv_rows, width), source-major as plan.segments says. Non-blocking: returns the
// all_to_all_v's Work; REQUIRES both buffers stay valid (send unmodified) until it completes.
// Throws std::invalid_argument if a span's size is not rows x width, width < 1, or the plan was
// made on a group of another size/rank.
Work dispatch(Comm& ep, const DispatchPlan& plan, std::span<const float> send,
              std::span<float> recv, int64_t width);

// The inverse movement: rows in the receive layout go back to where they came from, landing in
// the send layout. Used for the expert outputs (forward) and for the gradients of dispatch
// (backward); likewise dispatch() is the backward of combine(). recv_layout:
// (total_recv_rows, width); send_layout: (total_send_rows, width). Non-blocking, checks as
// dispatch.
Work combine(Comm& ep, const DispatchPlan& plan, std::span<const float> recv_layout,
             std::span<float> send_layout, int64_t width);

// The same movements for packed rows (parallel/row_codec.h: bf16, or fp8 codes with their
// scales, as 32-bit words): `words` = row_words(format, width) per row. Checks as above.
Work dispatch_packed(Comm& ep, const DispatchPlan& plan, std::span<const uint32_t> send,
                     std::span<uint32_t> recv, int64_t words);
Work combine_packed(Comm& ep, const DispatchPlan& plan, std::span<const uint32_t> recv_layout,
                    std::span<uint32_t> send_layout, int64_t words);

}  // namespace tessera::parallel
