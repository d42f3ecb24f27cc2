#include "trainer/layers/moe_block.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "trainer/layers/buffer.h"

namespace tessera::trainer {

MoeBlock::MoeBlock(ParamTable& table, const ModelConfig& config, int layer, int ep, int ep_rank,
                   parallel::Comm* ep_comm)
    : table_(table),
      name_("layers." + std::to_string(layer) + ".moe"),
      layer_(layer),
      local_experts_(config.n_experts / ep),
      ep_comm_(ep > 1 ? ep_comm : nullptr),
      dim_(config.dim),
      hidden_(config.moe_inter_dim),
      eps_(config.norm_eps),
      seq_aux_alpha_(config.seq_aux_alpha) {
  shape_.n_experts = config.n_experts;
  shape_.top_k = config.top_k;
  shape_.n_group = config.n_group;
  shape_.topk_group = config.topk_group;
  shape_.route_scale = config.route_scale;
  const std::string p = "layers." + std::to_string(layer) + ".";
  const int64_t E = config.n_experts, D = dim_, F = hidden_, El = local_experts_;
  if (ep < 1 || E % ep != 0 || ep_rank < 0 || ep_rank >= ep || (ep > 1 && !ep_comm)) {
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
                                          config.n_shared_experts * F);
  }
  load_counts_.assign(E, 0);
}

parallel::Work MoeBlock::RouteAndDispatch(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* logits = ensure_floats(be, c.logits, N * E);
  float* scores = ensure_floats(be, c.scores, N * E);
  int32_t* idx = ensure_ints(be, c.idx, N * K);
  float* gates = ensure_floats(be, c.gates, N * K);
  int32_t* pos_of_slot = ensure_ints(be, c.pos_of_slot, N * K);
  int32_t* slot_of_pos = ensure_ints(be, c.slot_of_pos, N * K);
  float* xp = ensure_floats(be, c.xp, N * K * D);
  const float* xn = c.xn.data<float>();

  // logits (N, E) = xn · Wg^T
  ops.linear_forward(logits, E, xn, D, table_.value_ptr(gate_w_), N, D, E);
  ops.router_forward(scores, idx, gates, logits, table_.value_ptr(gate_b_), N, shape_);
  c.counts.assign(E, 0);
  ops.moe_build_permutation(pos_of_slot, slot_of_pos, c.counts.data(), idx, N, K, E);
  // The permutation's per-expert row counts are the routing load.
  if (c.mb.training) {
    for (int64_t e = 0; e < E; ++e) load_counts_[e] += c.counts[e];
  }
  ops.moe_permute(xp, xn, slot_of_pos, N, K, D);

  // Dispatch: under EP the rows go to their experts' owners; in one process they stay put.
  c.segments.clear();
  c.rows.clear();
  if (!ep_comm_) {
    int64_t offset = 0;
    for (int64_t e = 0; e < E; ++e) {
      c.segments.push_back({e, 0, offset, c.counts[e]});
      offset += c.counts[e];
    }
    c.expert_rows = N * K;
    c.xe_ptr = xp;
    c.ye_ptr = ensure_floats(be, c.yp, N * K * D);
  } else {
    c.plan = parallel::plan_dispatch(*ep_comm_, c.counts, E);
    c.segments = c.plan.segments;
    c.expert_rows = c.plan.total_recv_rows();
    c.xe_ptr = ensure_floats(be, c.xe, c.expert_rows * D);
    c.ye_ptr = ensure_floats(be, c.ye, c.expert_rows * D);
    ensure_floats(be, c.yp, N * K * D);
  }
  for (const parallel::ExpertSegment& s : c.segments) {
    c.rows.push_back({s.local_expert, s.offset, s.rows});
  }
  if (!ep_comm_) return {};
  return parallel::dispatch(*ep_comm_, c.plan, {xp, static_cast<size_t>(N * K * D)},
                            {c.xe_ptr, static_cast<size_t>(c.expert_rows * D)}, D);
}

parallel::Work MoeBlock::ExpertsForward(Context& c) {
  const int64_t R = c.expert_rows, D = dim_, F = hidden_;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* ab = ensure_floats(be, c.ab, R * 2 * F);
  float* hp = ensure_floats(be, c.hp, R * F);
  const float* xe = c.xe_ptr;
  float* ye = c.ye_ptr;
  // ab rows (n, 2F) = xe rows · [W1_e | W3_e]^T, per (source, expert) segment
  ops.grouped_linear_forward(ab, 2 * F, xe, D, table_.value_ptr(w1_), c.rows, D, F);
  ops.grouped_linear_forward(ab + F, 2 * F, xe, D, table_.value_ptr(w3_), c.rows, D, F);
  ops.swiglu_forward(hp, ab, ab + F, 2 * F, R, F);
  ops.grouped_linear_forward(ye, D, hp, F, table_.value_ptr(w2_), c.rows, F, D);
  if (!ep_comm_) return {};
  // combine: the outputs go back to the ranks that routed them
  const int64_t NK = c.mb.tokens() * shape_.top_k;
  return parallel::combine(*ep_comm_, c.plan, {ye, static_cast<size_t>(R * D)},
                           {c.yp.data<float>(), static_cast<size_t>(NK * D)}, D);
}

void MoeBlock::Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) {
  if (slot >= static_cast<int>(contexts_.size())) contexts_.resize(slot + 1);
  Context& c = contexts_[slot];
  c.mb = mb;
  c.x = x;
  const int64_t N = mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* rstd = ensure_floats(be, c.rstd, N);
  float* xn = ensure_floats(be, c.xn, N * D);
  ops.rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));

  // The local work (shared experts, balance loss) runs while the routed rows travel.
  parallel::Work dispatch = RouteAndDispatch(c);
  ops.copy(y, x, N * D);
  if (shared_) shared_->Forward(slot, xn, y, N, /*accumulate=*/true);
  c.aux_loss = 0;
  if (seq_aux_alpha_ > 0) {
    c.aux_loss = mb.sequence_scale * ops.seq_balance_loss_forward(c.scores.data<float>(),
                                                                  c.idx.data<int32_t>(), mb.batch,
                                                                  mb.seq_len, E, K,
                                                                  seq_aux_alpha_);
  }
  dispatch.wait();
  ExpertsForward(c).wait();
  ops.moe_unpermute_combine(y, c.yp.data<float>(), c.gates.data<float>(),
                            c.pos_of_slot.data<int32_t>(), N, K, D, /*accumulate=*/true);
}

parallel::Work MoeBlock::DispatchOutputGrads(Context& c) {
  const int64_t NK = c.mb.tokens() * shape_.top_k, R = c.expert_rows, D = dim_;
  kernels::Backend& be = table_.backend();
  float* dxp = ensure_floats(be, c.dxp, NK * D);
  if (!ep_comm_) {
    c.dye_ptr = c.dyp.data<float>();
    c.dxe_ptr = dxp;
    return {};
  }
  // The output gradients follow the outputs' path backwards.
  c.dye_ptr = ensure_floats(be, c.dye, R * D);
  c.dxe_ptr = ensure_floats(be, c.dxe, R * D);
  return parallel::dispatch(*ep_comm_, c.plan, {c.dyp.data<float>(), static_cast<size_t>(NK * D)},
                            {c.dye_ptr, static_cast<size_t>(R * D)}, D);
}

parallel::Work MoeBlock::ExpertsBackwardInput(Context& c) {
  const int64_t NK = c.mb.tokens() * shape_.top_k, R = c.expert_rows, D = dim_, F = hidden_;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* dhp = ensure_floats(be, c.dhp, R * F);
  float* dab = ensure_floats(be, c.dab, R * 2 * F);
  const float* dye = c.dye_ptr;
  float* dxe = c.dxe_ptr;
  const float* ab = c.ab.data<float>();
  ops.grouped_linear_backward_input(dhp, F, dye, D, table_.value_ptr(w2_), c.rows, F, D);
  ops.swiglu_backward(dab, dab + F, dhp, ab, ab + F, 2 * F, R, F);
  // dxe = dab[:, :F] · W1_e + dab[:, F:] · W3_e
  ops.grouped_linear_backward_input(dxe, D, dab, 2 * F, table_.value_ptr(w1_), c.rows, D, F);
  ops.grouped_linear_backward_input(dxe, D, dab + F, 2 * F, table_.value_ptr(w3_), c.rows, D, F,
                                    {.accumulate = true});
  if (!ep_comm_) return {};
  // Input gradients return to the ranks that routed the tokens.
  return parallel::combine(*ep_comm_, c.plan, {dxe, static_cast<size_t>(R * D)},
                           {c.dxp.data<float>(), static_cast<size_t>(NK * D)}, D);
}

void MoeBlock::BackwardInput(int slot, const float* dy, float* dx) {
  Context& c = contexts_.at(slot);
  c.dy = dy;
  const int64_t N = c.mb.tokens(), D = dim_, E = shape_.n_experts, K = shape_.top_k;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* dxn = ensure_floats(be, c.dxn, N * D);
  float* dyp = ensure_floats(be, c.dyp, N * K * D);
  float* dgates = ensure_floats(be, c.dgates, N * K);
  float* dlogits = ensure_floats(be, c.dlogits, N * E);
  const int32_t* pos_of_slot = c.pos_of_slot.data<int32_t>();

  ops.moe_unpermute_combine_backward(dyp, dgates, dy, c.yp.data<float>(), c.gates.data<float>(),
                                     pos_of_slot, N, K, D);
  // The local work (shared experts, router) runs while the output gradients travel.
  parallel::Work dispatch = DispatchOutputGrads(c);
  if (shared_) {
    shared_->BackwardInput(slot, dy, dxn, /*accumulate=*/false);
  } else {
    ops.fill(dxn, 0.0f, N * D);
  }
  const float* dscores = nullptr;
  if (seq_aux_alpha_ > 0) {
    float* ds = ensure_floats(be, c.dscores, N * E);
    ops.fill(ds, 0.0f, N * E);
    ops.seq_balance_loss_backward(ds, c.scores.data<float>(), c.idx.data<int32_t>(), c.mb.batch,
                                  c.mb.seq_len, E, K, seq_aux_alpha_,
                                  static_cast<float>(c.mb.sequence_scale));
    dscores = ds;
  }
  ops.router_backward(dlogits, dgates, dscores, c.scores.data<float>(), c.idx.data<int32_t>(), N,
                      shape_);
  // dxn += dlogits (N, E) · Wg (E, D)
  ops.linear_backward_input(dxn, D, dlogits, E, table_.value_ptr(gate_w_), N, D, E,
                            {.accumulate = true});
  dispatch.wait();
  ExpertsBackwardInput(c).wait();
  ops.moe_permute_backward(dxn, c.dxp.data<float>(), pos_of_slot, N, K, D, /*accumulate=*/true);
  ops.copy(dx, dy, N * D);
  ops.rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                             /*accumulate=*/true);
}

void MoeBlock::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.mb.tokens(), D = dim_, F = hidden_, E = shape_.n_experts;
  kernels::BackendOps<float>& ops = table_.ops();
  if (shared_) shared_->BackwardWeight(slot);
  const float* dab = c.dab.data<float>();
  ops.grouped_linear_backward_weight(table_.grad_ptr(w2_), c.dye_ptr, D, c.hp.data<float>(), F,
                                     c.rows, F, D);
  ops.grouped_linear_backward_weight(table_.grad_ptr(w1_), dab, 2 * F, c.xe_ptr, D, c.rows, D, F);
  ops.grouped_linear_backward_weight(table_.grad_ptr(w3_), dab + F, 2 * F, c.xe_ptr, D, c.rows,
                                     D, F);
  // dWg (E, D) += dlogits^T · xn
  ops.linear_backward_weight(table_.grad_ptr(gate_w_), c.dlogits.data<float>(), E,
                             c.xn.data<float>(), D, N, D, E);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                              c.rstd.data<float>(), N, D);
}

double MoeBlock::update_bias(double gamma) {
  const int64_t E = shape_.n_experts;
  int64_t total = 0, max_load = 0;
  for (int64_t l : load_counts_) {
    total += l;
    max_load = std::max(max_load, l);
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
  return total > 0 ? max_load / mean : 0.0;
}

}  // namespace tessera::trainer
