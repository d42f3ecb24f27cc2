#include "trainer/layers/output_head.h"

namespace tessera::trainer {

OutputHead::OutputHead(ParamTable& table, const ModelConfig& config)
    : table_(table), dim_(config.dim), vocab_(config.vocab_size), eps_(config.norm_eps) {
  norm_ = table.add({"norm.weight", {dim_}, ParamInit::kOnes, false});
  head_ = table.add({"head.weight", {vocab_, dim_}});
}

void OutputHead::Carve(Context& c, ActivationArena& arena, int64_t N) const {
  c.N = N;
  c.rstd = arena.take<float>(N);
  c.xn = arena.take<float>(N * dim_);
  c.logits = arena.take<float>(N * vocab_);
  c.losses = arena.take<float>(N);
  c.lse = arena.take<float>(N);
  c.dxn = arena.take<float>(N * dim_);
}

double OutputHead::Forward(Context& c, const float* x, const int32_t* targets,
                           double token_scale) const {
  c.x = x;
  c.targets = targets;
  c.token_scale = token_scale;
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.rmsnorm_forward(c.xn, c.rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  ops.linear_forward(c.logits, V, c.xn, D, table_.value_ptr(head_), N, D, V);
  ops.cross_entropy_forward(c.losses, c.lse, c.logits, targets, N, V);
  c.ce_sum = ops.sum(c.losses, N);
  return c.ce_sum * token_scale;
}

void OutputHead::BackwardInput(Context& c, float* dx, const float* dxn_extra) const {
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  float* dlogits = c.logits;  // in place: logits are not needed after this
  ops.cross_entropy_backward(dlogits, dlogits, c.lse, c.targets, N, V,
                             static_cast<float>(c.token_scale));
  ops.linear_backward_input(c.dxn, D, dlogits, V, table_.value_ptr(head_), N, D, V);
  if (dxn_extra != nullptr) ops.add_inplace(c.dxn, dxn_extra, N * D);
  ops.rmsnorm_backward_input(dx, c.dxn, c.x, table_.value_ptr(norm_), c.rstd, N, D,
                             /*accumulate=*/false);
}

void OutputHead::BackwardWeight(Context& c) const {
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_weight(table_.grad_ptr(head_), c.logits, V, c.xn, D, N, D, V);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn, c.x, c.rstd, N, D);
}

}  // namespace tessera::trainer
