#include "trainer/layers/attention_block.h"

namespace tessera::trainer {

AttentionBlock::AttentionBlock(ParamTable& table, const ModelConfig& config,
                               const std::string& prefix)
    : table_(table),
      name_(prefix + "attn"),
      dim_(config.dim),
      n_heads_(config.n_heads),
      head_dim_(config.dim / config.n_heads),
      eps_(config.norm_eps),
      theta_(config.rope_theta),
      precision_(config.block_precision) {
  const std::string& p = prefix;
  norm_ = table.add({p + "attn_norm.weight", {dim_}, ParamInit::kOnes, false});
  wq_ = table.add({p + "attn.wq.weight", {dim_, dim_}});
  table.add({p + "attn.wk.weight", {dim_, dim_}});
  table.add({p + "attn.wv.weight", {dim_, dim_}});
  wo_ = table.add({p + "attn.wo.weight", {dim_, dim_}});
  auto local = [this](void (AttentionBlock::*fn)(Context&)) {
    return [this, fn](BlockContext& c) {
      (this->*fn)(static_cast<Context&>(c));
      return parallel::Work();
    };
  };
  pieces_.forward = {{"attention", false, local(&AttentionBlock::ForwardPiece)}};
  pieces_.backward_input = {{"attention", false, local(&AttentionBlock::BackwardInputPiece)}};
  pieces_.backward_weight = {
      {"attention weights", false, local(&AttentionBlock::BackwardWeightPiece)}};
}

std::unique_ptr<BlockContext> AttentionBlock::NewContext() const {
  return std::make_unique<Context>();
}

kernels::AttentionShape AttentionBlock::shape(const MicroBatchInfo& mb) const {
  return {mb.batch, mb.seq_len, n_heads_, head_dim_};
}

void AttentionBlock::Carve(BlockContext& ctx, ActivationArena& arena) const {
  Context& c = static_cast<Context&>(ctx);
  const int64_t N = c.mb.tokens(), D = dim_;
  c.rstd = arena.take<float>(N);
  c.xn = SavedActivation::Carve(arena, N, D, precision_ == kernels::Precision::kFP8);
  c.qkv = arena.take<float>(N * 3 * D);
  c.saved =
      arena.take<float>(kernels::attention_saved_numel(arena.device(), shape(c.mb)));
  c.attn = arena.take<float>(N * D);
  c.dattn = arena.take<float>(N * D);
  c.dqkv = arena.take<float>(N * 3 * D);
  c.dxn = arena.take<float>(N * D);
  c.scratch =
      arena.take<float>(kernels::attention_scratch_numel(arena.device(), shape(c.mb)));
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

void AttentionBlock::ForwardPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  kernels::BackendOps<float>& ops = table_.ops();
  ensure_rope(T);
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();
  float* qkv = c.qkv;
  ops.rmsnorm_forward(c.xn.values, c.rstd, c.x, table_.value_ptr(norm_), N, D,
                      static_cast<float>(eps_));
  // qkv (N, 3D) = xn · [Wq; Wk; Wv]^T
  ops.linear_forward(qkv, 3 * D, c.xn.values, D, table_.value_ptr(wq_), N, D, 3 * D,
                     {.precision = precision_});
  c.xn.Save(ops, N);
  ops.rope_forward(qkv, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.rope_forward(qkv + D, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.attention_forward(c.attn, D, c.saved, qkv, qkv + D, qkv + 2 * D, 3 * D, shape(c.mb));
  // y = x + attn · Wo^T
  ops.copy(c.y, c.x, N * D);
  ops.linear_forward(c.y, D, c.attn, D, table_.value_ptr(wo_), N, D, D, {.accumulate = true, .precision = precision_});
}

void AttentionBlock::BackwardInputPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  kernels::BackendOps<float>& ops = table_.ops();
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();
  const float* qkv = c.qkv;
  float* dqkv = c.dqkv;
  // dattn = dy · Wo
  ops.linear_backward_input(c.dattn, D, c.dy, D, table_.value_ptr(wo_), N, D, D, {.precision = precision_});
  ops.attention_backward(dqkv, dqkv + D, dqkv + 2 * D, 3 * D, c.scratch, c.dattn, c.attn, D,
                         c.saved, qkv, qkv + D, qkv + 2 * D, 3 * D, shape(c.mb));
  ops.rope_backward(dqkv, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  ops.rope_backward(dqkv + D, 3 * D, cos, sin, B, T, n_heads_, head_dim_);
  // dxn = dqkv (N, 3D) · [Wq; Wk; Wv] (3D, D)
  ops.linear_backward_input(c.dxn, D, dqkv, 3 * D, table_.value_ptr(wq_), N, D, 3 * D, {.precision = precision_});
  // dx = dy (residual) + RMSNorm'(dxn)
  ops.copy(c.dx, c.dy, N * D);
  ops.rmsnorm_backward_input(c.dx, c.dxn, c.x, table_.value_ptr(norm_), c.rstd, N, D,
                             /*accumulate=*/true);
}

void AttentionBlock::BackwardWeightPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  // dWo (D, D) += dy^T · attn
  ops.linear_backward_weight(table_.grad_ptr(wo_), c.dy, D, c.attn, D, N, D, D, precision_);
  // d[Wq; Wk; Wv] (3D, D) += dqkv^T · xn
  ops.linear_backward_weight(table_.grad_ptr(wq_), c.dqkv, 3 * D, c.xn.Load(ops, N), D, N, D,
                             3 * D, precision_);
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn, c.x, c.rstd, N, D);
}

}  // namespace tessera::trainer
