#include "trainer/layers/normed_head_loss.h"

namespace tessera::trainer {

NormedHeadLoss::NormedHeadLoss(ParamTable& table, int norm, int head, int64_t dim, int64_t vocab,
                               double eps)
    : table_(table), norm_(norm), head_(head), dim_(dim), vocab_(vocab), eps_(eps) {}

void NormedHeadLoss::Carve(Buffers& b, ActivationArena& arena, int64_t N) const {
  b.N = N;
  b.rstd = arena.take<float>(N);
  b.xn = arena.take<float>(N * dim_);
  b.logits = arena.take<float>(N * vocab_);
  b.losses = arena.take<float>(N);
  b.lse = arena.take<float>(N);
  b.dxn = arena.take<float>(N * dim_);
}

double NormedHeadLoss::Forward(Buffers& b, const float* x, const int32_t* targets,
                               double scale) const {
  b.x = x;
  b.targets = targets;
  b.scale = scale;
  const int64_t N = b.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.rmsnorm_forward(b.xn, b.rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  ops.linear_forward(b.logits, V, b.xn, D, table_.value_ptr(head_), N, D, V);
  ops.cross_entropy_forward(b.losses, b.lse, b.logits, targets, N, V);
  b.ce_sum = ops.sum(b.losses, N);
  return b.ce_sum * scale;
}

void NormedHeadLoss::BackwardInput(Buffers& b, float* dx, const float* dxn_extra) const {
  const int64_t N = b.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  float* dlogits = b.logits;  // in place: the logits are not needed after this
  ops.cross_entropy_backward(dlogits, dlogits, b.lse, b.targets, N, V, static_cast<float>(b.scale));
  ops.linear_backward_input(b.dxn, D, dlogits, V, table_.value_ptr(head_), N, D, V);
  if (dxn_extra != nullptr) ops.add_inplace(b.dxn, dxn_extra, N * D);
  ops.rmsnorm_backward_input(dx, b.dxn, b.x, table_.value_ptr(norm_), b.rstd, N, D,
                             /*accumulate=*/false);
}

void NormedHeadLoss::BackwardWeight(Buffers& b) const {
  const int64_t N = b.N, D = dim_, V = vocab_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_weight(table_.grad_ptr(head_), b.logits, V, b.xn, D, N, D, V);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), b.dxn, b.x, b.rstd, N, D);
}

}  // namespace tessera::trainer
