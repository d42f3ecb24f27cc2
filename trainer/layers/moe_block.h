// MoE sub-layer (DeepSeek-V3): y = x + Shared(n) + sum_j gate_j * Expert_{e_j}(n), n = RMSNorm(x).
// Routing: sigmoid affinities, group-limited top-k on (scores + gate.bias); gate.bias is not
// trained by gradients but nudged after each optimizer step towards balanced load
// (aux-loss-free balancing). The optional sequence-wise balance loss adds its gradient to the
// router in the backward.
//
// With expert parallelism (ep > 1) this rank holds routed experts [ep_rank*E/ep,
// (ep_rank+1)*E/ep) and the permuted rows travel to their experts' owners and back by all-to-all
// over the EP group (parallel/expert_dispatch.h); the backward sends gradients the reverse way.
// In one process dispatch and combine move nothing. The pieces (DESIGN.md's overlap table):
//   forward          route (posts the count exchange) -> dispatch (posts the rows) ->
//                    shared experts + balance loss (local, while the rows travel) ->
//                    experts (local) -> combine (posts the outputs back) -> unpermute (local)
//   backward_input   combine backward (local) -> dispatch grads (posts) -> shared experts +
//                    router backward (local, meanwhile) -> experts backward (local) ->
//                    combine grads (posts) -> unpermute backward + norm (local)
//   backward_weight  experts weights, then shared experts / router / norm weights (local)
// A piece that consumes an exchange waits for it; the others never block.
//
// Expert-side buffers are sized for the worst case routing, so that a micro-batch's arena is
// known before the first step: N*k rows in one process; under EP every row of every EP peer
// that could reach this rank's experts (ep * N * min(k, E/ep)).
//
// Node-aware dispatch (set_nodes(..., node_aware = true); parallel/node_dispatch.h): rows cross
// nodes once per (token, node) to the rail peer there, which fans them out inside its node and
// sums the node's gated expert outputs before they cross back (moe_block_node_pieces.cc). Its
// pieces (each exchange its own piece; "a" = across nodes, "w" = within a node):
//   forward          route (counts) -> dispatch (rows, a) -> dispatch routes (expert ids and
//                    gates, a) -> shared experts -> forward within node (local) -> dispatch
//                    within node (w) -> experts -> combine within node (w) -> reduce within node
//                    (local: gated sum) -> combine (a) -> unpermute (local: sum over nodes)
//   backward_input   combine backward (local) -> dispatch grads (a) -> shared experts backward
//                    -> combine backward within node (local: gate * dy, gate grads) -> dispatch
//                    grads within node (w) -> return gate grads (a) -> experts backward ->
//                    combine grads within node (w) -> router backward (local) -> reduce grads
//                    within node (local) -> combine grads (a) -> unpermute backward
// The result equals the flat path's up to the order of float sums (a token's outputs are summed
// per node first).
//
// Wire precision of the row exchanges (parallel/row_codec.h), from the block precision
// (DESIGN.md "Precision", V3 report §3.3.2): fp8 dispatches e4m3 rows with power-of-two 1x128
// scales and combines in bf16; bf16 dispatches and combines bf16; fp32 sends fp32. The backward
// follows the same recipe ("a similar strategy is applied to the activation gradient before MoE
// down-projections"; both combines stay bf16): dispatch grads (gate * dy per expert row, the
// down-projection's output gradient) go as the dispatch (fp8 / bf16 / fp32), combine grads (the
// experts' input gradients) in bf16 with fp8, in fp32 with bf16 and fp32. Why not bf16 with bf16:
// the backward's values differ between layouts by float summation order (the fp32 head's and
// attention's GEMMs block by rows), and a bf16 rounding of the input gradients turns such ulps into
// whole bf16 steps now and then; with bf16 GEMMs elsewhere the layouts then drift apart beyond what
// bf16 runs are held to (tests/trainer/layout_equivalence_test.py: 4 micro-batches of 4 sequences
// vs one of 16 moved step 1's grad_norm by 8.6e-6 and a weight by 8e-4 after 3 steps, against 3e-9
// and 1e-6 with fp32 combine grads); fp8 runs are held to fp8's wider bound. (bf16 dispatch grads
// cost nothing: the down-projection's bf16 GEMMs round dy to bf16 anyway.) Every row is rounded the
// same way whatever the layout: the piece before the post encodes, the piece after the wait
// decodes, and rows that do not move (one process) get the same round trip in those pieces.
// Node-aware: both dispatch hops send fp8 (the forwarder re-encodes decoded rows, which is lossless
// with power-of-two scales), the within-node combine sends each expert's output in bf16, and the
// across-node combine carries the node's gated partial sums in fp32 (rounding them to bf16 would
// add a rounding the flat path has not, so the layouts would differ by more than summation order).
// Node-aware backward, message by message:
//   dispatch grads (a)            the token's dy, one row per (token, node), UNGATED: fp32. The
//                                 forwarder multiplies by the gates, and rounding dy before that
//                                 product would round twice where the flat path rounds once.
//   dispatch grads within node (w) gate * dy per expert row: per-expert rows, fp8 / bf16 (the
//                                 flat path's dispatch grads rows, rounded once).
//   combine grads within node (w)  each expert row's input gradient: per-expert rows, as the
//                                 flat path's combine grads (fp8: bf16; else fp32).
//   combine grads (a)             the node's partial sums of its experts' input gradients: fp32,
//                                 as the forward's across-node combine.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/router.h"
#include "parallel/comm.h"
#include "parallel/expert_dispatch.h"
#include "parallel/node_dispatch.h"
#include "parallel/row_codec.h"
#include "trainer/layers/block.h"
#include "trainer/layers/saved_activation.h"
#include "trainer/layers/swiglu_mlp.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class MoeBlock : public Block {
 public:
  // Adds, under `prefix` ("layers.{i}." or "mtp.{d}.block."), ffn_norm.weight,
  // moe.gate.{weight,bias}, moe.experts.{w1,w3,w2} (this rank's slice of the experts) and, with
  // shared experts, moe.shared.*. ep_comm: the EP group (size ep) carrying the rows (the
  // backend's memory); ep_host_comm: the same ranks for the per-expert counts (host memory; null:
  // ep_comm carries both, as MPI on the CPU does). Null when the block is only described
  // (parameters, memory), never when it runs with ep > 1.
  MoeBlock(ParamTable& table, const ModelConfig& config, const std::string& prefix, int ep = 1,
           int ep_rank = 0, parallel::Comm* ep_comm = nullptr,
           parallel::Comm* ep_host_comm = nullptr);
  // A layer number where the prefix goes would compile (0 converts to a null string): refused.
  template <typename... Rest>
  MoeBlock(ParamTable&, const ModelConfig&, int, Rest...) = delete;

  const std::string& name() const override { return name_; }
  std::unique_ptr<BlockContext> NewContext() const override;
  void Carve(BlockContext& ctx, ActivationArena& arena) const override;
  const BlockPieces& pieces() const override { return pieces_; }

  // Its parameters' prefix: "layers.{i}." or "mtp.{d}.block.".
  const std::string& prefix() const { return prefix_; }
  int64_t n_experts() const { return shape_.n_experts; }
  // Tokens routed to each expert by training forwards since the last update_bias() (E).
  // Distributed training sums this over the global batch before update_bias().
  std::vector<int64_t>& load_counts() { return load_counts_; }
  // How evenly load_counts() spread (1 = perfectly balanced; 0 if nothing was routed): the
  // busiest expert's rows over the mean, and the busiest EP rank's (its n_experts / ep experts
  // together) over the EP ranks' mean, which sets how long the group waits for its experts.
  struct RoutingLoad {
    double expert_max_over_mean = 0;
    double ep_rank_max_over_mean = 0;
  };
  // bias_e += gamma * sign(mean_load - load_e); then clears load_counts. Returns the load
  // before the update.
  RoutingLoad update_bias(double gamma);
  // Experts chosen by the forward of `ctx`: (N, k) in the backend's memory, descending biased
  // score.
  const int32_t* routing(const BlockContext& ctx) const;

  // Where the EP group's ranks sit: ep_ranks_per_node consecutive EP ranks per node (ep when
  // the group is on one node); node_aware picks node-aware dispatch (needs ep > 1). Counts the
  // bytes the expert exchanges send off the node either way. REQUIRES: before any context is
  // carved (it changes the pieces and the arena); ep_ranks_per_node divides ep.
  void set_nodes(int ep_ranks_per_node, bool node_aware);
  bool node_aware() const { return node_aware_; }
  // Bytes this rank's expert exchanges (rows, counts, route entries, gate gradients) of training
  // micro-batches sent to ranks on other nodes since the last call (rows in their wire format,
  // parallel/row_codec.h); resets the count.
  int64_t take_cross_node_bytes();
  // Bytes this rank's row exchanges of training micro-batches sent to OTHER EP ranks (rows to
  // itself excluded; both hops of node-aware dispatch; route entries, counts and gate gradients
  // not included) since the last call, in their wire format; resets the counts. Forward:
  // dispatch (token rows to the experts) and combine (expert outputs back); backward: dispatch
  // grads (output gradients to the experts) and combine grads (input gradients back).
  struct ExchangeBytes {
    int64_t dispatch = 0, combine = 0, dispatch_grads = 0, combine_grads = 0;
  };
  ExchangeBytes take_exchange_bytes();
  // The wire formats (from the block precision): the forward's, and the backward's per-expert
  // rows (flat path; node-aware: the within-node hops, see above).
  parallel::RowFormat dispatch_format() const { return dispatch_format_; }
  parallel::RowFormat combine_format() const { return combine_format_; }
  parallel::RowFormat dispatch_grads_format() const { return dispatch_grads_format_; }
  parallel::RowFormat combine_grads_format() const { return combine_grads_format_; }

  // Bytes of the packed bf16 / fp8 row exchanges one context keeps in host memory for
  // micro-batches of `tokens` (Context's x_send, x_recv, x2_send, x2_recv, y_send, y_recv): they
  // grow to the largest exchange and stay, so the worst-case routing Carve sizes for is what
  // the memory plan counts (on the CPU, where host memory is the device's). fp32 exchanges move
  // the backend's rows directly and keep nothing; one process (ep 1) round-trips rows through a
  // temporary freed at once. Not counted: the fp32 host staging of rows where the host cannot
  // address the backend's memory (GPUs).
  int64_t exchange_buffer_bytes(int64_t tokens) const;

 private:
  // Worst-case row counts of a micro-batch of `tokens` (Carve's sizes).
  struct WorstCaseRows {
    int64_t expert_rows = 0;  // rows the local experts may compute (max_expert_rows)
    // Node-aware dispatch: rows sent across nodes (a token to min(nodes, k) nodes), received
    // by a forwarder (one origin per node for each of its rail's tokens), forwarded within its
    // node (each to at most min(k, experts per node) experts).
    int64_t cross_sent = 0, cross_received = 0, within_node = 0;
  };
  WorstCaseRows worst_case_rows(int64_t tokens) const;

  struct Context : BlockContext {
    std::vector<int64_t> counts;  // (E) rows per global expert in the permuted order
    // Rows the local experts compute, as (local expert, first row, rows) runs of the expert-side
    // buffers: the permuted rows themselves in one process, the received rows under EP.
    std::vector<parallel::ExpertSegment> segments;
    std::vector<kernels::RowSegment> rows;  // the same runs, as grouped-GEMM segments
    parallel::PendingDispatchPlan pending_plan;  // EP: the count exchange in flight
    parallel::DispatchPlan plan;                 // EP only
    parallel::Work rows_in, rows_out;            // EP: the exchanges the next pieces consume
    int64_t expert_rows = 0;
    // Token side: (N, ...) and the permuted rows (N*k, D).
    float *rstd = nullptr, *xn = nullptr, *logits = nullptr, *scores = nullptr, *gates = nullptr;
    float *dxn = nullptr, *dgates = nullptr, *dscores = nullptr, *dlogits = nullptr;
    int32_t *idx = nullptr, *pos_of_slot = nullptr, *slot_of_pos = nullptr;
    float *xp = nullptr, *yp = nullptr, *dyp = nullptr, *dxp = nullptr;
    // Expert side (worst-case rows): the EP receive buffers, or the token-side ones.
    float *xe = nullptr, *ye = nullptr, *dye = nullptr, *dxe = nullptr;
    // (rows, 2F), (rows, F), (rows, F), (rows, 2F)
    SavedActivation ab;  // (R, 2F) the experts' SwiGLU inputs; fp8: kept in fp8
    float *hp = nullptr, *dhp = nullptr, *dab = nullptr;  // hp: fp8: transient, recomputed
    SwigluMlp::Buffers shared;
    // Node-aware dispatch only. Host: the routing, the plans, the route entries and gate grads.
    std::vector<int32_t> idx_host, entries_in;
    std::vector<float> gates_host, dgates_rows, dgates_back, dgates_host;
    parallel::NodeSendPlan node_send;
    parallel::PendingNodePlan pending_node;
    parallel::NodePlan node_plan;
    parallel::NodeForwardPlan node_forward;
    parallel::Work routes_in, gates_back;
    // Packed rows of the forward's exchanges in bf16 / fp8 (host memory, parallel/row_codec.h):
    // dispatch (node-aware: its first hop) send / receive, node-aware's second hop send /
    // receive, combine (node-aware: within the node) send / receive; and host staging of rows
    // for backends whose memory the host cannot address. The backward reuses them once the
    // forward's rows are decoded: dispatch grads in x_* (node-aware: x2_*), combine grads in y_*.
    std::vector<uint32_t> x_send, x_recv, x2_send, x2_recv, y_send, y_recv;
    std::vector<float> staging;
    // Device: index arrays of the local gathers and sums, and the rows of both stages.
    // Stage 1 origin side xs1 (S, D) / ys1 (S+1, D), forwarder side xr1 / yr1 (R, D); stage 2
    // forwarder side xs2 / ys2 (T+1, D). The extra row is zero: where a slot has nothing.
    int32_t *tok_of_row = nullptr, *row_of_tn = nullptr, *row_of_pos = nullptr,
            *pos_of_entry = nullptr;
    float *gates2 = nullptr, *dgates2 = nullptr;
    float *xs1 = nullptr, *ys1 = nullptr, *xr1 = nullptr, *yr1 = nullptr, *xs2 = nullptr,
          *ys2 = nullptr;
  };
  int64_t max_expert_rows(int64_t tokens) const;

  // Forward pieces.
  parallel::Work Route(Context& c);
  parallel::Work Dispatch(Context& c);
  parallel::Work SharedForward(Context& c);
  parallel::Work ExpertsForward(Context& c);
  parallel::Work Combine(Context& c);
  parallel::Work Unpermute(Context& c);
  // Backward-input pieces.
  parallel::Work CombineBackward(Context& c);
  parallel::Work DispatchGrads(Context& c);
  parallel::Work SharedAndRouterBackward(Context& c);
  parallel::Work ExpertsBackwardInput(Context& c);
  parallel::Work CombineGrads(Context& c);
  parallel::Work UnpermuteBackward(Context& c);
  // Backward-weight pieces.
  parallel::Work ExpertsBackwardWeight(Context& c);
  parallel::Work LocalBackwardWeight(Context& c);
  // Node-aware dispatch pieces (the others above branch on node_aware_ where they differ).
  parallel::Work DispatchRoutes(Context& c);
  parallel::Work ForwardWithinNode(Context& c);
  parallel::Work DispatchWithinNode(Context& c);
  parallel::Work CombineWithinNode(Context& c);
  parallel::Work ReduceWithinNode(Context& c);
  parallel::Work SharedBackward(Context& c);
  parallel::Work CombineBackwardWithinNode(Context& c);
  parallel::Work DispatchGradsWithinNode(Context& c);
  parallel::Work ReturnGateGrads(Context& c);
  parallel::Work CombineGradsWithinNode(Context& c);
  parallel::Work RouterBackward(Context& c);
  parallel::Work ReduceGradsWithinNode(Context& c);
  void BuildPieces();
  parallel::NodeGeometry geometry(int ep_rank) const;
  int nodes() const { return ep_ / ep_ranks_per_node_; }
  // Adds `bytes` to the cross-node count when `c` is a training micro-batch.
  void CountCrossNode(const Context& c, int64_t bytes);
  // The row exchanges the forward and the backward share (only the buffers differ): token-side
  // rows to the experts' owners and back (node-aware: the across-node stage, through the stage
  // buffers), and node-aware's within-node stage. Each counts its off-node bytes.
  // `format`: the wire format; not fp32: the rows are encoded into the context's packed buffers
  // here and the consuming piece decodes them after its wait (DecodeRows).
  parallel::Work RowsToExperts(Context& c, const float* token_rows, float* expert_rows,
                               parallel::RowFormat format = parallel::RowFormat::kFp32);
  parallel::Work RowsFromExperts(Context& c, const float* expert_rows, float* token_rows,
                                 parallel::RowFormat format = parallel::RowFormat::kFp32);
  parallel::Work RowsToExpertsWithinNode(Context& c, float* expert_rows,
                                         parallel::RowFormat format = parallel::RowFormat::kFp32);
  parallel::Work RowsFromExpertsWithinNode(
      Context& c, const float* expert_rows,
      parallel::RowFormat format = parallel::RowFormat::kFp32);
  // Backend rows <-> packed host words in `format` (through c.staging where the host cannot
  // address the backend's memory); RoundTrip: rows = decode(encode(rows)) in place.
  void EncodeRows(Context& c, parallel::RowFormat format, const float* rows, int64_t n,
                  std::vector<uint32_t>& packed);
  void DecodeRows(Context& c, parallel::RowFormat format, const std::vector<uint32_t>& packed,
                  int64_t n, float* rows);
  void RoundTrip(Context& c, parallel::RowFormat format, float* rows, int64_t n);
  // Adds the bytes of `rows_per_rank` rows (per EP rank, this rank's own excluded) to `counter`
  // when `c` is a training micro-batch.
  void CountExchange(const Context& c, int64_t& counter, std::span<const int64_t> rows_per_rank,
                     parallel::RowFormat format);

  ParamTable& table_;
  std::string name_;
  std::string prefix_;
  int ep_;
  int ep_rank_;
  int ep_ranks_per_node_;     // ep_ until set_nodes()
  bool node_aware_ = false;
  int64_t cross_node_bytes_ = 0;
  ExchangeBytes exchange_bytes_;
  int64_t local_experts_;
  parallel::Comm* ep_comm_;
  parallel::Comm* ep_host_comm_;
  int64_t dim_, hidden_;
  double eps_, seq_aux_alpha_;
  kernels::Precision precision_;  // of the experts' GEMMs; the router gate stays fp32
  parallel::RowFormat dispatch_format_, combine_format_;  // the forward's wire formats
  parallel::RowFormat dispatch_grads_format_, combine_grads_format_;  // the backward's
  kernels::RouterShape shape_;
  int norm_, gate_w_, gate_b_, w1_, w3_, w2_;
  std::unique_ptr<SwigluMlp> shared_;  // null without shared experts
  std::vector<int64_t> load_counts_;
  BlockPieces pieces_;
};

}  // namespace tessera::trainer
