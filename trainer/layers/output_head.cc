#include "trainer/layers/output_head.h"

#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/rmsnorm.h"
#include "trainer/layers/buffer.h"

namespace tessera::trainer {

using kernels::Trans;

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
  float* rstd = ensure_floats(c.rstd, N);
  float* xn = ensure_floats(c.xn, N * D);
  float* logits = ensure_floats(c.logits, N * V);
  float* losses = ensure_floats(c.losses, N);
  float* lse = ensure_floats(c.lse, N);
  kernels::rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  kernels::gemm<float>(Trans::kNo, Trans::kYes, N, V, D, 1.0f, xn, D, table_.value_ptr(head_), D,
                       0.0f, logits, V);
  kernels::cross_entropy_forward(losses, lse, logits, targets, N, V);
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) sum += losses[n];
  c.ce_sum = sum;
  return sum * token_scale;
}

void OutputHead::BackwardInput(int slot, float* dx) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, V = vocab_;
  float* dlogits = c.logits.data<float>();  // in place: logits are not needed after this
  float* dxn = ensure_floats(c.dxn, N * D);
  kernels::cross_entropy_backward(dlogits, dlogits, c.lse.data<float>(), c.targets, N, V,
                                  static_cast<float>(c.token_scale));
  kernels::gemm<float>(Trans::kNo, Trans::kNo, N, D, V, 1.0f, dlogits, V, table_.value_ptr(head_), D,
                       0.0f, dxn, D);
  kernels::rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D);
}

void OutputHead::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, V = vocab_;
  kernels::gemm<float>(Trans::kYes, Trans::kNo, V, D, N, 1.0f, c.logits.data<float>(), V,
                       c.xn.data<float>(), D, 1.0f, table_.grad_ptr(head_), D);
  kernels::rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                                   c.rstd.data<float>(), N, D);
}

}  // namespace tessera::trainer
