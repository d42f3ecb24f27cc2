#include "trainer/layers/output_head.h"

#include "trainer/layers/buffer.h"

namespace tessera::trainer {

OutputHead::OutputHead(ParamTable& table, const ModelConfig& config)
    : table_(table), dim_(config.dim), vocab_(config.vocab_size), eps_(config.norm_eps) {
  norm_ = table.add({"norm.weight", {dim_}, ParamInit::kOnes, false});
  head_ = table.add({"head.weight", {vocab_, dim_}});
}

double OutputHead::Forward(int slot, const float* x, const int32_t* targets, int64_t N,
                           double token_scale) {
  if (slot >= static_cast<int>(contexts_.size())) contexts_.resize(slot + 1);
  Context& c = contexts_[slot];
  c.N = N;
  c.x = x;
  c.targets = targets;
  c.token_scale = token_scale;
  const int64_t D = dim_, V = vocab_;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* rstd = ensure_floats(be, c.rstd, N);
  float* xn = ensure_floats(be, c.xn, N * D);
  float* logits = ensure_floats(be, c.logits, N * V);
  float* losses = ensure_floats(be, c.losses, N);
  float* lse = ensure_floats(be, c.lse, N);
  ops.rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  ops.linear_forward(logits, V, xn, D, table_.value_ptr(head_), N, D, V);
  ops.cross_entropy_forward(losses, lse, logits, targets, N, V);
  c.ce_sum = ops.sum(losses, N);
  return c.ce_sum * token_scale;
}

void OutputHead::BackwardInput(int slot, float* dx) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  float* dlogits = c.logits.data<float>();  // in place: logits are not needed after this
  float* dxn = ensure_floats(table_.backend(), c.dxn, N * D);
  ops.cross_entropy_backward(dlogits, dlogits, c.lse.data<float>(), c.targets, N, V,
                             static_cast<float>(c.token_scale));
  ops.linear_backward_input(dxn, D, dlogits, V, table_.value_ptr(head_), N, D, V);
  ops.rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                             /*accumulate=*/false);
}

void OutputHead::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_weight(table_.grad_ptr(head_), c.logits.data<float>(), V,
                             c.xn.data<float>(), D, N, D, V);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                              c.rstd.data<float>(), N, D);
}

}  // namespace tessera::trainer
