#include "trainer/layers/attention_block.h"

#include <cstring>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"
#include "trainer/layers/buffer.h"

namespace tessera::trainer {

using kernels::Trans;

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
  rope_cos_ = kernels::Tensor::empty({seq_len, half}, kernels::DType::kF32);
  rope_sin_ = kernels::Tensor::empty({seq_len, half}, kernels::DType::kF32);
  kernels::rope_table(rope_cos_.data<float>(), rope_sin_.data<float>(), seq_len, head_dim_, theta_);
  rope_len_ = seq_len;
}

void AttentionBlock::Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) {
  Context& c = context(slot);
  c.mb = mb;
  c.x = x;
  const int64_t N = mb.tokens(), D = dim_, B = mb.batch, T = mb.seq_len;
  ensure_rope(T);
  float* rstd = ensure_floats(c.rstd, N);
  float* xn = ensure_floats(c.xn, N * D);
  float* qkv = ensure_floats(c.qkv, N * 3 * D);
  float* probs = ensure_floats(c.probs, B * n_heads_ * T * T);
  float* attn = ensure_floats(c.attn, N * D);

  kernels::rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  // qkv (N, 3D) = xn (N, D) · [Wq; Wk; Wv]^T
  kernels::gemm<float>(Trans::kNo, Trans::kYes, N, 3 * D, D, 1.0f, xn, D, table_.value_ptr(wq_), D,
                       0.0f, qkv, 3 * D);
  kernels::rope_forward(qkv, 3 * D, rope_cos_.data<float>(), rope_sin_.data<float>(), B, T,
                        n_heads_, head_dim_);
  kernels::rope_forward(qkv + D, 3 * D, rope_cos_.data<float>(), rope_sin_.data<float>(), B, T,
                        n_heads_, head_dim_);
  kernels::attention_forward(attn, D, probs, qkv, qkv + D, qkv + 2 * D, 3 * D, B, T, n_heads_,
                             head_dim_);
  // y = x + attn · Wo^T
  std::memcpy(y, x, sizeof(float) * N * D);
  kernels::gemm<float>(Trans::kNo, Trans::kYes, N, D, D, 1.0f, attn, D, table_.value_ptr(wo_), D,
                       1.0f, y, D);
}

void AttentionBlock::BackwardInput(int slot, const float* dy, float* dx) {
  Context& c = contexts_.at(slot);
  c.dy = dy;
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  float* dattn = ensure_floats(c.dattn, N * D);
  float* dqkv = ensure_floats(c.dqkv, N * 3 * D);
  float* dxn = ensure_floats(c.dxn, N * D);
  float* scratch = ensure_floats(c.scratch, T * T);
  const float* qkv = c.qkv.data<float>();

  // dattn = dy · Wo
  kernels::gemm<float>(Trans::kNo, Trans::kNo, N, D, D, 1.0f, dy, D, table_.value_ptr(wo_), D, 0.0f,
                       dattn, D);
  kernels::attention_backward(dqkv, dqkv + D, dqkv + 2 * D, 3 * D, scratch, dattn, D,
                              c.probs.data<float>(), qkv, qkv + D, qkv + 2 * D, 3 * D, B, T,
                              n_heads_, head_dim_);
  kernels::rope_backward(dqkv, 3 * D, rope_cos_.data<float>(), rope_sin_.data<float>(), B, T,
                         n_heads_, head_dim_);
  kernels::rope_backward(dqkv + D, 3 * D, rope_cos_.data<float>(), rope_sin_.data<float>(), B, T,
                         n_heads_, head_dim_);
  // dxn = dqkv (N, 3D) · [Wq; Wk; Wv] (3D, D)
  kernels::gemm<float>(Trans::kNo, Trans::kNo, N, D, 3 * D, 1.0f, dqkv, 3 * D,
                       table_.value_ptr(wq_), D, 0.0f, dxn, D);
  // dx = dy (residual) + RMSNorm'(dxn)
  std::memcpy(dx, dy, sizeof(float) * N * D);
  kernels::rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                                  /*accumulate=*/true);
}

void AttentionBlock::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.mb.tokens(), D = dim_;
  // dWo (D, D) += dy^T · attn
  kernels::gemm<float>(Trans::kYes, Trans::kNo, D, D, N, 1.0f, c.dy, D, c.attn.data<float>(), D,
                       1.0f, table_.grad_ptr(wo_), D);
  // d[Wq; Wk; Wv] (3D, D) += dqkv^T · xn
  kernels::gemm<float>(Trans::kYes, Trans::kNo, 3 * D, D, N, 1.0f, c.dqkv.data<float>(), 3 * D,
                       c.xn.data<float>(), D, 1.0f, table_.grad_ptr(wq_), D);
  kernels::rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                                   c.rstd.data<float>(), N, D);
}

}  // namespace tessera::trainer
