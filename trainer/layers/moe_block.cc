#include "trainer/layers/moe_block.h"

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <vector>

namespace tessera::trainer {

MoeBlock::MoeBlock(ParamTable& table, const ModelConfig& config, const std::string& prefix,
                   int ep, int ep_rank, parallel::Comm* ep_comm, parallel::Comm* ep_host_comm)
    : table_(table),
      name_(prefix + "moe"),
      prefix_(prefix),
      ep_(ep),
      ep_rank_(ep_rank),
      ep_ranks_per_node_(ep),
      local_experts_(config.n_experts / ep),
      ep_comm_(ep > 1 ? ep_comm : nullptr),
      ep_host_comm_(ep > 1 ? (ep_host_comm ? ep_host_comm : ep_comm) : nullptr),
      dim_(config.dim),
      hidden_(config.moe_inter_dim),
      eps_(config.norm_eps),
      seq_aux_alpha_(config.seq_aux_alpha),
      precision_(config.block_precision),
      // V3 (report §3.3.2): fp8 dispatch with power-of-two scales, bf16 combine.
      dispatch_format_(precision_ == kernels::Precision::kFP8    ? parallel::RowFormat::kFp8
                       : precision_ == kernels::Precision::kBF16 ? parallel::RowFormat::kBf16
                                                                 : parallel::RowFormat::kFp32),
      combine_format_(precision_ == kernels::Precision::kF32 ? parallel::RowFormat::kFp32
                                                             : parallel::RowFormat::kBf16),
      // V3: "a similar strategy" (fp8) for the activation gradient before the down-projections,
      // the backward combine in bf16 (fp8); bf16 keeps the combine grads fp32 (moe_block.h).
      dispatch_grads_format_(dispatch_format_),
      combine_grads_format_(precision_ == kernels::Precision::kFP8 ? parallel::RowFormat::kBf16
                                                                   : parallel::RowFormat::kFp32) {
  shape_.n_experts = config.n_experts;
  shape_.top_k = config.top_k;
  shape_.n_group = config.n_group;
  shape_.topk_group = config.topk_group;
  shape_.route_scale = config.route_scale;
  const std::string& p = prefix;
  const int64_t E = config.n_experts, D = dim_, F = hidden_, El = local_experts_;
  if (ep < 1 || E % ep != 0 || ep_rank < 0 || ep_rank >= ep) {
    throw std::logic_error(name_ + ": bad expert slice (ep " + std::to_string(ep) + ", rank " +
                           std::to_string(ep_rank) + ", " + std::to_string(E) + " experts)");
  }
  norm_ = table.add({p + "ffn_norm.weight", {D}, ParamInit::kOnes, false});
  gate_w_ = table.add({p + "moe.gate.weight", {E, D}});
  gate_b_ = table.add({p + "moe.gate.bias", {E}, ParamInit::kZeros, false, /*trainable=*/false});
  auto expert = [&](const char* w, kernels::Shape shape) {
    return table.add({p + "moe.experts." + w, std::move(shape), ParamInit::kNormal, true, true,
                      ParamRegion::kExpert, E, ep_rank * El});
  };
  w1_ = expert("w1", {El, F, D});
  w3_ = expert("w3", {El, F, D});
  w2_ = expert("w2", {El, D, F});
  if (config.n_shared_experts > 0) {
    shared_ = std::make_unique<SwigluMlp>(table, p + "moe.shared.", ".weight", D,
                                          config.n_shared_experts * F, config.block_precision);
  }
  load_counts_.assign(E, 0);
  BuildPieces();
}

void MoeBlock::BuildPieces() {
  using Piece = parallel::Work (MoeBlock::*)(Context&);
  // waits: the piece consumes an earlier piece's exchange (the FB overlap runs the other
  // micro-batch's steps before it; trainer/chunk_steps.h).
  auto piece = [this](const char* name, bool communicates, Piece fn, bool waits = false) {
    return BlockPiece{name, communicates,
                      [this, fn](BlockContext& c) { return (this->*fn)(static_cast<Context&>(c)); },
                      waits};
  };
  const bool ep_exchange = ep_ > 1;
  pieces_ = {};
  if (node_aware_) {
    pieces_.forward = {piece("route", true, &MoeBlock::Route),
                       piece("dispatch", true, &MoeBlock::Dispatch, true),
                       piece("dispatch routes", true, &MoeBlock::DispatchRoutes),
                       piece("shared experts", false, &MoeBlock::SharedForward),
                       piece("forward within node", false, &MoeBlock::ForwardWithinNode, true),
                       piece("dispatch within node", true, &MoeBlock::DispatchWithinNode),
                       piece("experts", false, &MoeBlock::ExpertsForward, ep_exchange),
                       piece("combine within node", true, &MoeBlock::CombineWithinNode),
                       piece("reduce within node", false, &MoeBlock::ReduceWithinNode, true),
                       piece("combine", true, &MoeBlock::Combine),
                       piece("unpermute", false, &MoeBlock::Unpermute, ep_exchange)};
    pieces_.backward_input = {
        piece("combine backward", false, &MoeBlock::CombineBackward),
        piece("dispatch grads", true, &MoeBlock::DispatchGrads),
        piece("shared experts backward", false, &MoeBlock::SharedBackward),
        piece("combine backward within node", false, &MoeBlock::CombineBackwardWithinNode, true),
        piece("dispatch grads within node", true, &MoeBlock::DispatchGradsWithinNode),
        piece("return gate grads", true, &MoeBlock::ReturnGateGrads),
        piece("experts backward", false, &MoeBlock::ExpertsBackwardInput, ep_exchange),
        piece("combine grads within node", true, &MoeBlock::CombineGradsWithinNode),
        piece("router backward", false, &MoeBlock::RouterBackward, true),
        piece("reduce grads within node", false, &MoeBlock::ReduceGradsWithinNode, true),
        piece("combine grads", true, &MoeBlock::CombineGrads),
        piece("unpermute backward", false, &MoeBlock::UnpermuteBackward, ep_exchange)};
    pieces_.backward_weight = {
        piece("experts weights", false, &MoeBlock::ExpertsBackwardWeight),
        piece("shared experts, router and norm weights", false, &MoeBlock::LocalBackwardWeight)};
    return;
  }
  pieces_.forward = {piece("route", ep_exchange, &MoeBlock::Route),
                     piece("dispatch", ep_exchange, &MoeBlock::Dispatch, ep_exchange),
                     piece("shared experts", false, &MoeBlock::SharedForward),
                     piece("experts", false, &MoeBlock::ExpertsForward, ep_exchange),
                     piece("combine", ep_exchange, &MoeBlock::Combine),
                     piece("unpermute", false, &MoeBlock::Unpermute, ep_exchange)};
  pieces_.backward_input = {piece("combine backward", false, &MoeBlock::CombineBackward),
                            piece("dispatch grads", ep_exchange, &MoeBlock::DispatchGrads),
                            piece("shared experts and router backward", false,
                                  &MoeBlock::SharedAndRouterBackward),
                            piece("experts backward", false, &MoeBlock::ExpertsBackwardInput, ep_exchange),
                            piece("combine grads", ep_exchange, &MoeBlock::CombineGrads),
                            piece("unpermute backward", false, &MoeBlock::UnpermuteBackward, ep_exchange)};
  pieces_.backward_weight = {
      piece("experts weights", false, &MoeBlock::ExpertsBackwardWeight),
      piece("shared experts, router and norm weights", false, &MoeBlock::LocalBackwardWeight)};
}

void MoeBlock::set_nodes(int ep_ranks_per_node, bool node_aware) {
  if (ep_ranks_per_node < 1 || ep_ % ep_ranks_per_node != 0 || (node_aware && ep_ < 2)) {
    throw std::logic_error(name_ + ": set_nodes(" + std::to_string(ep_ranks_per_node) + ", " +
                           (node_aware ? "node-aware" : "flat") + ") with ep " +
                           std::to_string(ep_));
  }
  ep_ranks_per_node_ = ep_ranks_per_node;
  node_aware_ = node_aware;
  if (node_aware_) parallel::check_node_geometry(geometry(ep_rank_), name_.c_str());
  BuildPieces();
}

int64_t MoeBlock::take_cross_node_bytes() {
  const int64_t b = cross_node_bytes_;
  cross_node_bytes_ = 0;
  return b;
}

void MoeBlock::CountCrossNode(const Context& c, int64_t bytes) {
  if (c.mb.training) cross_node_bytes_ += bytes;
}

MoeBlock::ExchangeBytes MoeBlock::take_exchange_bytes() {
  const ExchangeBytes b = exchange_bytes_;
  exchange_bytes_ = {};
  return b;
}

void MoeBlock::CountExchange(const Context& c, int64_t& counter,
                             std::span<const int64_t> rows_per_rank, parallel::RowFormat format) {
  if (!c.mb.training) return;
  int64_t rows = 0;
  for (size_t r = 0; r < rows_per_rank.size(); ++r) {
    if (static_cast<int>(r) != ep_rank_) rows += rows_per_rank[r];
  }
  counter += rows * parallel::row_bytes(format, dim_);
}

void MoeBlock::EncodeRows(Context& c, parallel::RowFormat format, const float* rows, int64_t n,
                          std::vector<uint32_t>& packed) {
  const int64_t D = dim_;
  packed.resize(static_cast<size_t>(n * parallel::row_words(format, D)));
  kernels::Backend& be = table_.backend();
  const float* host = rows;
  if (!be.capabilities().host_accessible) {
    c.staging.resize(static_cast<size_t>(n * D));
    be.copy_to_host(c.staging.data(), rows, sizeof(float) * n * D);
    host = c.staging.data();
  }
  parallel::encode_rows(format, host, n, D, packed.data());
}

void MoeBlock::DecodeRows(Context& c, parallel::RowFormat format,
                          const std::vector<uint32_t>& packed, int64_t n, float* rows) {
  const int64_t D = dim_;
  kernels::Backend& be = table_.backend();
  if (be.capabilities().host_accessible) {
    parallel::decode_rows(format, packed.data(), n, D, rows);
    return;
  }
  c.staging.resize(static_cast<size_t>(n * D));
  parallel::decode_rows(format, packed.data(), n, D, c.staging.data());
  be.copy_from_host(rows, c.staging.data(), sizeof(float) * n * D);
}

void MoeBlock::RoundTrip(Context& c, parallel::RowFormat format, float* rows, int64_t n) {
  if (format == parallel::RowFormat::kFp32) return;
  std::vector<uint32_t> packed;
  EncodeRows(c, format, rows, n, packed);
  DecodeRows(c, format, packed, n, rows);
}

parallel::NodeGeometry MoeBlock::geometry(int ep_rank) const {
  return {ep_, ep_rank, ep_ranks_per_node_, shape_.n_experts, shape_.top_k};
}

std::unique_ptr<BlockContext> MoeBlock::NewContext() const {
  return std::make_unique<Context>();
}

int64_t MoeBlock::max_expert_rows(int64_t tokens) const {
  const int64_t K = shape_.top_k;
  if (ep_ == 1) return tokens * K;
  // Every EP peer's tokens could all route here, each at most once per local expert.
  return ep_ * tokens * std::min<int64_t>(K, local_experts_);
}

MoeBlock::WorstCaseRows MoeBlock::worst_case_rows(int64_t tokens) const {
  const int64_t K = shape_.top_k, E = shape_.n_experts;
  WorstCaseRows w;
  w.expert_rows = max_expert_rows(tokens);
  if (node_aware_) {
    const int64_t M = nodes();
    w.cross_sent = tokens * std::min<int64_t>(M, K);
    w.cross_received = M * tokens;
    w.within_node = w.cross_received * std::min<int64_t>(K, E / M);
  }
  return w;
}

int64_t MoeBlock::exchange_buffer_bytes(int64_t tokens) const {
  if (ep_ == 1) return 0;  // round trips only
  // Bytes of one packed row in the widest of the packed formats given (0: all fp32).
  auto packed_row_bytes = [D = dim_](std::initializer_list<parallel::RowFormat> formats) {
    int64_t bytes = 0;
    for (parallel::RowFormat f : formats) {
      if (f != parallel::RowFormat::kFp32) bytes = std::max(bytes, parallel::row_bytes(f, D));
    }
    return bytes;
  };
  // The backward reuses the forward's buffers: dispatch grads x_* (node-aware: x2_*), combine
  // grads y_*; a buffer holds the wider of the two formats.
  const int64_t to_experts = packed_row_bytes({dispatch_format_, dispatch_grads_format_});
  const int64_t from_experts = packed_row_bytes({combine_format_, combine_grads_format_});
  const WorstCaseRows w = worst_case_rows(tokens);
  const int64_t NK = tokens * shape_.top_k;
  // Flat: x_send (N*k) and x_recv (R); y_send (R) and y_recv (N*k).
  if (!node_aware_) return (NK + w.expert_rows) * (to_experts + from_experts);
  // Node-aware: the first hop packs the forward dispatch only (its backward stays fp32); the
  // second hop (x2_*) and the combine within the node (y_*) both directions.
  return (w.cross_sent + w.cross_received) * packed_row_bytes({dispatch_format_}) +
         (w.within_node + w.expert_rows) * (to_experts + from_experts);
}

void MoeBlock::Carve(BlockContext& ctx, ActivationArena& arena) const {
  Context& c = static_cast<Context&>(ctx);
  const int64_t N = c.mb.tokens(), D = dim_, F = hidden_, E = shape_.n_experts,
                K = shape_.top_k, NK = N * K;
  c.rstd = arena.take<float>(N);
  c.xn = arena.take<float>(N * D);
  c.logits = arena.take<float>(N * E);
  c.scores = arena.take<float>(N * E);
  c.gates = arena.take<float>(NK);
  c.idx = arena.take<int32_t>(NK);
  const WorstCaseRows worst = worst_case_rows(N);
  if (node_aware_) {
    const int64_t M = nodes(), S = worst.cross_sent, Rw = worst.cross_received,
                  T = worst.within_node;
    c.tok_of_row = arena.take<int32_t>(S);
    c.row_of_tn = arena.take<int32_t>(N * M);
    c.row_of_pos = arena.take<int32_t>(T);
    c.pos_of_entry = arena.take<int32_t>(Rw * K);
    c.gates2 = arena.take<float>(Rw * K);
    c.dgates2 = arena.take<float>(Rw * K);
    // The backward reuses the forward's rows once they are consumed: dy rows in xs1 / xr1 / xs2,
    // input gradients in ys1 / yr1 / ys2 (ys2's outputs are read before its reuse).
    c.xs1 = arena.take<float>(S * D);
    c.ys1 = arena.take<float>((S + 1) * D);
    c.xr1 = arena.take<float>(Rw * D);
    c.yr1 = arena.take<float>(Rw * D);
    c.xs2 = arena.take<float>((T + 1) * D);
    c.ys2 = arena.take<float>((T + 1) * D);
  } else {
    c.pos_of_slot = arena.take<int32_t>(NK);
    c.slot_of_pos = arena.take<int32_t>(NK);
    c.xp = arena.take<float>(NK * D);
    c.yp = arena.take<float>(NK * D);
    c.dyp = arena.take<float>(NK * D);
    c.dxp = arena.take<float>(NK * D);
  }
  c.dxn = arena.take<float>(N * D);
  c.dgates = arena.take<float>(NK);
  c.dscores = seq_aux_alpha_ > 0 ? arena.take<float>(N * E) : nullptr;
  c.dlogits = arena.take<float>(N * E);
  const int64_t R = worst.expert_rows;
  if (ep_ > 1) {
    c.xe = arena.take<float>(R * D);
    c.ye = arena.take<float>(R * D);
    c.dye = arena.take<float>(R * D);
    c.dxe = arena.take<float>(R * D);
  } else {
    c.xe = c.xp, c.ye = c.yp, c.dye = c.dyp, c.dxe = c.dxp;
  }
  const bool fp8 = precision_ == kernels::Precision::kFP8;
  c.ab = SavedActivation::Carve(arena, R, 2 * F, fp8);
  c.hp = fp8 ? arena.take_transient<float>(R * F) : arena.take<float>(R * F);
  c.dhp = arena.take<float>(R * F);
  c.dab = arena.take<float>(R * 2 * F);
  if (shared_) c.shared = shared_->Carve(arena, N);
}

const int32_t* MoeBlock::routing(const BlockContext& ctx) const {
  return static_cast<const Context&>(ctx).idx;
}

parallel::Work MoeBlock::Route(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.rmsnorm_forward(c.xn, c.rstd, c.x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  // logits (N, E) = xn · Wg^T
  ops.linear_forward(c.logits, E, c.xn, D, table_.value_ptr(gate_w_), N, D, E);
  ops.router_forward(c.scores, c.idx, c.gates, c.logits, table_.value_ptr(gate_b_), N, shape_);
  if (node_aware_) {
    // The stage-1 layout needs only this rank's routing: planned on the host, rows gathered.
    kernels::Backend& be = table_.backend();
    c.idx_host.resize(N * K);
    c.gates_host.resize(N * K);
    be.copy_to_host(c.idx_host.data(), c.idx, sizeof(int32_t) * N * K);
    be.copy_to_host(c.gates_host.data(), c.gates, sizeof(float) * N * K);
    c.node_send = parallel::plan_node_send(geometry(ep_rank_), c.idx_host, c.gates_host, N);
    c.counts = c.node_send.expert_counts;
    if (c.mb.training) {
      for (int64_t e = 0; e < E; ++e) load_counts_[e] += c.counts[e];
    }
    const int64_t S = c.node_send.total_rows();
    be.copy_from_host(c.tok_of_row, c.node_send.token_of_row.data(), sizeof(int32_t) * S);
    be.copy_from_host(c.row_of_tn, c.node_send.row_of_token_node.data(),
                      sizeof(int32_t) * N * nodes());
    ops.moe_permute(c.xs1, c.xn, c.tok_of_row, S, 1, D);
    c.segments.clear();
    c.rows.clear();
    c.pending_node = parallel::post_node_plan(*ep_host_comm_, geometry(ep_rank_), c.node_send);
    // What the count message sends to ranks of other nodes.
    CountCrossNode(c, static_cast<int64_t>(sizeof(int64_t)) * (E / ep_ + 1) *
                          (ep_ - ep_ranks_per_node_));
    return c.pending_node.work();
  }
  c.counts.assign(E, 0);
  ops.moe_build_permutation(c.pos_of_slot, c.slot_of_pos, c.counts.data(), c.idx, N, K, E);
  // The permutation's per-expert row counts are the routing load.
  if (c.mb.training) {
    for (int64_t e = 0; e < E; ++e) load_counts_[e] += c.counts[e];
  }
  ops.moe_permute(c.xp, c.xn, c.slot_of_pos, N, K, D);
  c.segments.clear();
  c.rows.clear();
  if (ep_ == 1) {
    // In one process the permuted rows are the experts' rows: no exchange.
    int64_t offset = 0;
    for (int64_t e = 0; e < E; ++e) {
      c.segments.push_back({e, 0, offset, c.counts[e]});
      c.rows.push_back({e, offset, c.counts[e]});
      offset += c.counts[e];
    }
    c.expert_rows = N * K;
    return {};
  }
  if (!ep_comm_) throw std::logic_error(name_ + ": expert parallelism without an EP communicator");
  c.pending_plan = parallel::post_dispatch_plan(*ep_host_comm_, c.counts, E);
  CountCrossNode(c, static_cast<int64_t>(sizeof(int64_t)) * (E / ep_) *
                        (ep_ - ep_ranks_per_node_));
  return c.pending_plan.work();
}

parallel::Work MoeBlock::RowsToExperts(Context& c, const float* token_rows, float* expert_rows,
                                       parallel::RowFormat format) {
  const int64_t NK = c.mb.tokens() * shape_.top_k, D = dim_;
  const int64_t row_bytes = parallel::row_bytes(format, D);
  const bool packed = format != parallel::RowFormat::kFp32;
  const int64_t words = parallel::row_words(format, D);
  int64_t& counter = expert_rows == c.xe ? exchange_bytes_.dispatch
                                         : exchange_bytes_.dispatch_grads;
  if (node_aware_) {  // the first stage: across nodes, once per (token, node)
    const int64_t S = c.node_plan.total_across_send(), R = c.node_plan.total_across_recv();
    CountCrossNode(c, row_bytes * parallel::off_node(c.node_plan.across_send_rows, ep_rank_,
                                                     ep_ranks_per_node_));
    CountExchange(c, counter, c.node_plan.across_send_rows, format);
    if (packed) {  // decoded into xr1 by ForwardWithinNode
      EncodeRows(c, format, c.xs1, S, c.x_send);
      c.x_recv.resize(static_cast<size_t>(R * words));
      return parallel::dispatch_across_packed(*ep_host_comm_, c.node_plan, c.x_send, c.x_recv,
                                              words);
    }
    return parallel::dispatch_across(*ep_comm_, c.node_plan, {c.xs1, static_cast<size_t>(S * D)},
                                     {c.xr1, static_cast<size_t>(R * D)}, D);
  }
  CountCrossNode(c, row_bytes * parallel::off_node(c.plan.send_rows, ep_rank_,
                                                   ep_ranks_per_node_));
  CountExchange(c, counter, c.plan.send_rows, format);
  if (packed) {  // decoded into expert_rows by ExpertsForward
    EncodeRows(c, format, token_rows, NK, c.x_send);
    c.x_recv.resize(static_cast<size_t>(c.expert_rows * words));
    return parallel::dispatch_packed(*ep_host_comm_, c.plan, c.x_send, c.x_recv, words);
  }
  return parallel::dispatch(*ep_comm_, c.plan, {token_rows, static_cast<size_t>(NK * D)},
                            {expert_rows, static_cast<size_t>(c.expert_rows * D)}, D);
}

parallel::Work MoeBlock::RowsFromExperts(Context& c, const float* expert_rows, float* token_rows,
                                         parallel::RowFormat format) {
  const int64_t NK = c.mb.tokens() * shape_.top_k, D = dim_;
  const int64_t row_bytes = parallel::row_bytes(format, D);
  int64_t& counter = expert_rows == c.ye ? exchange_bytes_.combine
                                         : exchange_bytes_.combine_grads;
  if (node_aware_) {  // each token's per-node partial sum crosses back once
    // fp32 always: these are sums of gated outputs (see moe_block.h on the wire precision).
    const int64_t S = c.node_plan.total_across_send(), R = c.node_plan.total_across_recv();
    const int64_t fp32_bytes = parallel::row_bytes(parallel::RowFormat::kFp32, D);
    CountCrossNode(c, fp32_bytes * parallel::off_node(c.node_plan.across_recv_rows, ep_rank_,
                                                      ep_ranks_per_node_));
    CountExchange(c, counter, c.node_plan.across_recv_rows, parallel::RowFormat::kFp32);
    return parallel::combine_across(*ep_comm_, c.node_plan, {c.yr1, static_cast<size_t>(R * D)},
                                    {c.ys1, static_cast<size_t>(S * D)}, D);
  }
  CountCrossNode(c, row_bytes * parallel::off_node(c.plan.recv_rows, ep_rank_,
                                                   ep_ranks_per_node_));
  CountExchange(c, counter, c.plan.recv_rows, format);
  if (format != parallel::RowFormat::kFp32) {  // decoded into token_rows by Unpermute
    const int64_t words = parallel::row_words(format, D);
    EncodeRows(c, format, expert_rows, c.expert_rows, c.y_send);
    c.y_recv.resize(static_cast<size_t>(NK * words));
    return parallel::combine_packed(*ep_host_comm_, c.plan, c.y_send, c.y_recv, words);
  }
  return parallel::combine(*ep_comm_, c.plan,
                           {expert_rows, static_cast<size_t>(c.expert_rows * D)},
                           {token_rows, static_cast<size_t>(NK * D)}, D);
}

parallel::Work MoeBlock::Dispatch(Context& c) {
  if (ep_ == 1) {  // nothing moves; the rows get the round trip an exchange would give them
    RoundTrip(c, dispatch_format_, c.xp, c.mb.tokens() * shape_.top_k);
    return {};
  }
  if (node_aware_) {
    c.node_plan = c.pending_node.finish();
  } else {
    c.plan = c.pending_plan.finish();
    c.segments = c.plan.segments;
    for (const parallel::ExpertSegment& s : c.segments) {
      c.rows.push_back({s.local_expert, s.offset, s.rows});
    }
    c.expert_rows = c.plan.total_recv_rows();
  }
  c.rows_in = RowsToExperts(c, c.xp, c.xe, dispatch_format_);
  return c.rows_in;
}

parallel::Work MoeBlock::SharedForward(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.copy(c.y, c.x, N * D);
  if (shared_) shared_->Forward(c.shared, c.xn, c.y, N, /*accumulate=*/true);
  c.aux_loss = 0;
  if (seq_aux_alpha_ > 0) {
    c.aux_loss = c.mb.sequence_scale * ops.seq_balance_loss_forward(c.scores, c.idx, c.mb.batch,
                                                                    c.mb.seq_len, E, K,
                                                                    seq_aux_alpha_);
  }
  return {};
}

parallel::Work MoeBlock::ExpertsForward(Context& c) {
  const int64_t R = c.expert_rows, D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  c.rows_in.wait();
  if (ep_ > 1 && dispatch_format_ != parallel::RowFormat::kFp32) {
    DecodeRows(c, dispatch_format_, node_aware_ ? c.x2_recv : c.x_recv, R, c.xe);
  }
  // ab rows (n, 2F) = xe rows · [W1_e | W3_e]^T, per (source, expert) segment
  float* ab = c.ab.values;
  ops.grouped_linear_forward(ab, 2 * F, c.xe, D, table_.value_ptr(w1_), c.rows, D, F,
                             {.precision = precision_});
  ops.grouped_linear_forward(ab + F, 2 * F, c.xe, D, table_.value_ptr(w3_), c.rows, D, F,
                             {.precision = precision_});
  ops.swiglu_forward(c.hp, ab, ab + F, 2 * F, R, F);
  ops.grouped_linear_forward(c.ye, D, c.hp, F, table_.value_ptr(w2_), c.rows, F, D,
                             {.precision = precision_});
  c.ab.Save(ops, R);
  return {};
}

parallel::Work MoeBlock::Combine(Context& c) {
  if (ep_ == 1) {  // nothing moves; the outputs get the round trip an exchange would give them
    RoundTrip(c, combine_format_, c.ye, c.expert_rows);
    return {};
  }
  // The outputs go back to the routing ranks (node-aware: the node's partial sums, fp32; each
  // expert output was rounded to combine_format_ on its way to the forwarder).
  c.rows_out = RowsFromExperts(c, c.ye, c.yp, node_aware_ ? parallel::RowFormat::kFp32
                                                           : combine_format_);
  return c.rows_out;
}

parallel::Work MoeBlock::Unpermute(Context& c) {
  c.rows_out.wait();
  if (ep_ > 1 && !node_aware_ && combine_format_ != parallel::RowFormat::kFp32) {
    DecodeRows(c, combine_format_, c.y_recv, c.mb.tokens() * shape_.top_k, c.yp);
  }
  if (node_aware_) {
    // y[t] += sum over nodes of the token's partials (row S: zeros for nodes it skipped).
    const int64_t S = c.node_plan.total_across_send(), D = dim_;
    kernels::BackendOps<float>& ops = table_.ops();
    ops.fill(c.ys1 + S * D, 0.0f, D);
    ops.moe_permute_backward(c.y, c.ys1, c.row_of_tn, c.mb.tokens(), nodes(), D,
                             /*accumulate=*/true);
    return {};
  }
  table_.ops().moe_unpermute_combine(c.y, c.yp, c.gates, c.pos_of_slot, c.mb.tokens(),
                                     shape_.top_k, dim_, /*accumulate=*/true);
  return {};
}

parallel::Work MoeBlock::CombineBackward(Context& c) {
  if (node_aware_) {  // dy rows in the stage-1 layout; the gates are applied by the forwarders
    table_.ops().moe_permute(c.xs1, c.dy, c.tok_of_row, c.node_send.total_rows(), 1, dim_);
    return {};
  }
  table_.ops().moe_unpermute_combine_backward(c.dyp, c.dgates, c.dy, c.yp, c.gates,
                                              c.pos_of_slot, c.mb.tokens(), shape_.top_k, dim_);
  return {};
}

parallel::Work MoeBlock::DispatchGrads(Context& c) {
  if (ep_ == 1) {  // nothing moves; the rows get the round trip an exchange would give them
    RoundTrip(c, dispatch_grads_format_, c.dyp, c.mb.tokens() * shape_.top_k);
    return {};
  }
  // The outputs' path, backwards. Node-aware: the first hop carries each token's ungated dy,
  // fp32 (moe_block.h); the within-node hop rounds the gated rows.
  c.rows_in = RowsToExperts(c, c.dyp, c.dye, node_aware_ ? parallel::RowFormat::kFp32
                                                          : dispatch_grads_format_);
  return c.rows_in;
}

parallel::Work MoeBlock::SharedAndRouterBackward(Context& c) {
  SharedBackward(c);
  return RouterBackward(c);
}

parallel::Work MoeBlock::SharedBackward(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_;
  if (shared_) {
    shared_->BackwardInput(c.shared, c.dy, c.dxn, N, /*accumulate=*/false);
  } else {
    table_.ops().fill(c.dxn, 0.0f, N * D);
  }
  return {};
}

parallel::Work MoeBlock::RouterBackward(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::BackendOps<float>& ops = table_.ops();
  if (node_aware_) {
    // Gate gradients came back per (stage-1 row, slot): slot j of token t from the row that
    // carried t to the node of its j-th expert.
    c.gates_back.wait();
    const parallel::NodeGeometry g = geometry(ep_rank_);
    const int M = nodes();
    c.dgates_host.resize(N * K);
    for (int64_t t = 0; t < N; ++t) {
      for (int64_t j = 0; j < K; ++j) {
        const int32_t row = c.node_send.row_of_token_node[t * M +
                                                          g.node_of_expert(c.idx_host[t * K + j])];
        c.dgates_host[t * K + j] = c.dgates_back[row * K + j];
      }
    }
    table_.backend().copy_from_host(c.dgates, c.dgates_host.data(), sizeof(float) * N * K);
  }
  const float* dscores = nullptr;
  if (seq_aux_alpha_ > 0) {
    ops.fill(c.dscores, 0.0f, N * E);
    ops.seq_balance_loss_backward(c.dscores, c.scores, c.idx, c.mb.batch, c.mb.seq_len, E, K,
                                  seq_aux_alpha_, static_cast<float>(c.mb.sequence_scale));
    dscores = c.dscores;
  }
  ops.router_backward(c.dlogits, c.dgates, dscores, c.scores, c.idx, N, shape_);
  // dxn += dlogits (N, E) · Wg (E, D)
  ops.linear_backward_input(c.dxn, D, c.dlogits, E, table_.value_ptr(gate_w_), N, D, E,
                            {.accumulate = true});
  return {};
}

parallel::Work MoeBlock::ExpertsBackwardInput(Context& c) {
  const int64_t R = c.expert_rows, D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  c.rows_in.wait();
  if (ep_ > 1 && dispatch_grads_format_ != parallel::RowFormat::kFp32) {
    DecodeRows(c, dispatch_grads_format_, node_aware_ ? c.x2_recv : c.x_recv, R, c.dye);
  }
  ops.grouped_linear_backward_input(c.dhp, F, c.dye, D, table_.value_ptr(w2_), c.rows, F, D, {.precision = precision_});
  const float* ab = c.ab.Load(ops, R);
  ops.swiglu_backward(c.dab, c.dab + F, c.dhp, ab, ab + F, 2 * F, R, F);
  // dxe = dab[:, :F] · W1_e + dab[:, F:] · W3_e
  ops.grouped_linear_backward_input(c.dxe, D, c.dab, 2 * F, table_.value_ptr(w1_), c.rows, D, F, {.precision = precision_});
  ops.grouped_linear_backward_input(c.dxe, D, c.dab + F, 2 * F, table_.value_ptr(w3_), c.rows, D,
                                    F, {.accumulate = true, .precision = precision_});
  return {};
}

parallel::Work MoeBlock::CombineGrads(Context& c) {
  if (ep_ == 1) {  // nothing moves; the gradients get the round trip an exchange would give them
    RoundTrip(c, combine_grads_format_, c.dxe, c.expert_rows);
    return {};
  }
  // Input gradients return to the routing ranks (node-aware: the node's partial sums, fp32; each
  // expert row's gradient was rounded to combine_grads_format_ on its way to the forwarder).
  c.rows_out = RowsFromExperts(c, c.dxe, c.dxp, node_aware_ ? parallel::RowFormat::kFp32
                                                             : combine_grads_format_);
  return c.rows_out;
}

parallel::Work MoeBlock::UnpermuteBackward(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, K = shape_.top_k, NK = N * K;
  kernels::BackendOps<float>& ops = table_.ops();
  c.rows_out.wait();
  if (ep_ > 1 && !node_aware_ && combine_grads_format_ != parallel::RowFormat::kFp32) {
    DecodeRows(c, combine_grads_format_, c.y_recv, NK, c.dxp);
  }
  if (node_aware_) {  // the per-node partial input gradients (row S: zeros)
    const int64_t S = c.node_plan.total_across_send();
    ops.fill(c.ys1 + S * D, 0.0f, D);
    ops.moe_permute_backward(c.dxn, c.ys1, c.row_of_tn, N, nodes(), D, /*accumulate=*/true);
  } else {
    ops.moe_permute_backward(c.dxn, c.dxp, c.pos_of_slot, N, K, D, /*accumulate=*/true);
  }
  ops.copy(c.dx, c.dy, N * D);
  ops.rmsnorm_backward_input(c.dx, c.dxn, c.x, table_.value_ptr(norm_), c.rstd, N, D,
                             /*accumulate=*/true);
  return {};
}

parallel::Work MoeBlock::ExpertsBackwardWeight(Context& c) {
  const int64_t D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  if (c.ab.fp8) {  // hp from the kept SwiGLU inputs
    const float* ab = c.ab.Load(ops, c.expert_rows);
    ops.swiglu_forward(c.hp, ab, ab + F, 2 * F, c.expert_rows, F);
  }
  ops.grouped_linear_backward_weight(table_.grad_ptr(w2_), c.dye, D, c.hp, F, c.rows, F, D,
                                     precision_);
  ops.grouped_linear_backward_weight(table_.grad_ptr(w1_), c.dab, 2 * F, c.xe, D, c.rows, D, F, precision_);
  ops.grouped_linear_backward_weight(table_.grad_ptr(w3_), c.dab + F, 2 * F, c.xe, D, c.rows, D,
                                     F, precision_);
  return {};
}

parallel::Work MoeBlock::LocalBackwardWeight(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts;
  kernels::BackendOps<float>& ops = table_.ops();
  if (shared_) shared_->BackwardWeight(c.shared, c.xn, c.dy, N);
  // dWg (E, D) += dlogits^T · xn
  ops.linear_backward_weight(table_.grad_ptr(gate_w_), c.dlogits, E, c.xn, D, N, D, E);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn, c.x, c.rstd, N, D);
  return {};
}

// Node-aware dispatch's pieces: moe_block_node_pieces.cc.

MoeBlock::RoutingLoad MoeBlock::update_bias(double gamma) {
  const int64_t E = shape_.n_experts;
  int64_t total = 0, max_load = 0, max_rank_load = 0;
  for (int64_t r = 0; r < ep_; ++r) {
    int64_t rank_load = 0;
    for (int64_t e = r * local_experts_; e < (r + 1) * local_experts_; ++e) {
      rank_load += load_counts_[e];
      max_load = std::max(max_load, load_counts_[e]);
    }
    total += rank_load;
    max_rank_load = std::max(max_rank_load, rank_load);
  }
  const double mean = static_cast<double>(total) / E;
  if (total > 0 && gamma > 0) {
    // E values: updated on the host, whatever the backend's device.
    kernels::Backend& be = table_.backend();
    std::vector<float> bias(E);
    be.copy_to_host(bias.data(), table_.value_ptr(gate_b_), sizeof(float) * E);
    for (int64_t e = 0; e < E; ++e) {
      const double diff = mean - static_cast<double>(load_counts_[e]);
      const double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
      bias[e] += static_cast<float>(gamma * sign);
    }
    be.copy_from_host(table_.value_ptr(gate_b_), bias.data(), sizeof(float) * E);
  }
  std::fill(load_counts_.begin(), load_counts_.end(), 0);
  if (total == 0) return {};
  return {max_load / mean, static_cast<double>(max_rank_load) * ep_ / static_cast<double>(total)};
}

}  // namespace tessera::trainer
