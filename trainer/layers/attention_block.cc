#include "trainer/layers/attention_block.h"

#include "trainer/layers/buffer.h"

namespace tessera::trainer {

AttentionBlock::AttentionBlock(ParamTable& table, const ModelConfig& config, int layer)
    : table_(table),
      name_("layers." + std::to_string(layer) + ".attn"),
      dim_(config.dim),
      n_heads_(config.n_heads),
      head_dim_(config.dim / config.n_heads),
      eps_(config.norm_eps),
      theta_(config.rope_theta) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  norm_ = table.add({p + "attn_norm.weight", {dim_}, ParamInit::kOnes, false});
  wq_ = table.add({p + "attn.wq.weight", {dim_, dim_}});
  table.add({p + "attn.wk.weight", {dim_, dim_}});
  table.add({p + "attn.wv.weight", {dim_, dim_}});
  wo_ = table.add({p + "attn.wo.weight", {dim_, dim_}});
}

AttentionBlock::Context& AttentionBlock::context(int slot) {
  if (slot >= static_cast<int>(contexts_.size())) contexts_.resize(slot + 1);
  return contexts_[slot];
}

void AttentionBlock::ensure_rope(int64_t seq_len) {
  if (seq_len <= rope_len_) return;
  const int64_t half = head_dim_ / 2;
  kernels::Backend& be = table_.backend();
  rope_cos_ = be.alloc({seq_len, half}, kernels::DType::kF32);
  rope_sin_ = be.alloc({seq_len, half}, kernels::DType::kF32);
  table_.ops().rope_table(rope_cos_.data<float>(), rope_sin_.data<float>(), seq_len, head_dim_,
                          theta_);
  rope_len_ = seq_len;
}

void AttentionBlock::Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) {
  Context& c = context(slot);
  c.mb = mb;
  c.x = x;
  const int64_t N = mb.tokens(), D = dim_, B = mb.batch, T = mb.seq_len;
  const kernels::AttentionShape shape{B, T, n_heads_, head_dim_};
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  ensure_rope(T);
  float* rstd = ensure_floats(be, c.rstd, N);
  float* xn = ensure_floats(be, c.xn, N * D);
  float* qkv = ensure_floats(be, c.qkv, N * 3 * D);
  float* saved = ensure_floats(be, c.saved, ops.attention_saved_numel(shape));
  float* attn = ensure_floats(be, c.attn, N * D);
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();

  ops.rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  // qkv (N, 3D) = xn · [Wq; Wk; Wv]^T
  ops.linear_forward(qkv, 3 * D, xn, D, table_.value_ptr(wq_), N, D, 3 * D);
  ops.rope_forward(qkv, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.rope_forward(qkv + D, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.attention_forward(attn, D, saved, qkv, qkv + D, qkv + 2 * D, 3 * D, shape);
  // y = x + attn · Wo^T
  ops.copy(y, x, N * D);
  ops.linear_forward(y, D, attn, D, table_.value_ptr(wo_), N, D, D, {.accumulate = true});
}

void AttentionBlock::BackwardInput(int slot, const float* dy, float* dx) {
  Context& c = contexts_.at(slot);
  c.dy = dy;
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  const kernels::AttentionShape shape{B, T, n_heads_, head_dim_};
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* dattn = ensure_floats(be, c.dattn, N * D);
  float* dqkv = ensure_floats(be, c.dqkv, N * 3 * D);
  float* dxn = ensure_floats(be, c.dxn, N * D);
  float* scratch = ensure_floats(be, c.scratch, ops.attention_scratch_numel(shape));
  const float* qkv = c.qkv.data<float>();
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();

  // dattn = dy · Wo
  ops.linear_backward_input(dattn, D, dy, D, table_.value_ptr(wo_), N, D, D);
  ops.attention_backward(dqkv, dqkv + D, dqkv + 2 * D, 3 * D, scratch, dattn,
                         c.attn.data<float>(), D, c.saved.data<float>(), qkv, qkv + D,
                         qkv + 2 * D, 3 * D, shape);
  ops.rope_backward(dqkv, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.rope_backward(dqkv + D, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  // dxn = dqkv (N, 3D) · [Wq; Wk; Wv] (3D, D)
  ops.linear_backward_input(dxn, D, dqkv, 3 * D, table_.value_ptr(wq_), N, D, 3 * D);
  // dx = dy (residual) + RMSNorm'(dxn)
  ops.copy(dx, dy, N * D);
  ops.rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                             /*accumulate=*/true);
}

void AttentionBlock::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.mb.tokens(), D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  // dWo (D, D) += dy^T · attn
  ops.linear_backward_weight(table_.grad_ptr(wo_), c.dy, D, c.attn.data<float>(), D, N, D, D);
  // d[Wq; Wk; Wv] (3D, D) += dqkv^T · xn
  ops.linear_backward_weight(table_.grad_ptr(wq_), c.dqkv.data<float>(), 3 * D,
                             c.xn.data<float>(), D, N, D, 3 * D);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                              c.rstd.data<float>(), N, D);
}

}  // namespace tessera::trainer
