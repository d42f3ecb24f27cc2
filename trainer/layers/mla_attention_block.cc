#include "trainer/layers/mla_attention_block.h"

namespace tessera::trainer {

MlaAttentionBlock::MlaAttentionBlock(ParamTable& table, const ModelConfig& config,
                                     const std::string& prefix)
    : table_(table),
      name_(prefix + "attn"),
      dim_(config.dim),
      n_heads_(config.n_heads),
      q_rank_(config.q_lora_rank),
      kv_rank_(config.kv_lora_rank),
      nope_(config.qk_nope_head_dim),
      rope_(config.qk_rope_head_dim),
      v_dim_(config.v_head_dim),
      eps_(config.norm_eps),
      theta_(config.rope_theta),
      precision_(config.block_precision) {
  const std::string a = prefix + "attn.";
  const int64_t H = n_heads_, dk = qk_head_dim();
  norm_ = table.add({prefix + "attn_norm.weight", {dim_}, ParamInit::kOnes, false});
  if (q_rank_ > 0) {
    wq_a_ = table.add({a + "wq_a.weight", {q_rank_, dim_}});
    q_norm_ = table.add({a + "q_norm.weight", {q_rank_}, ParamInit::kOnes, false});
    wq_b_ = table.add({a + "wq_b.weight", {H * dk, q_rank_}});
  } else {
    wq_ = table.add({a + "wq.weight", {H * dk, dim_}});
  }
  wkv_a_ = table.add({a + "wkv_a.weight", {kv_rank_ + rope_, dim_}});
  kv_norm_ = table.add({a + "kv_norm.weight", {kv_rank_}, ParamInit::kOnes, false});
  wkv_b_ = table.add({a + "wkv_b.weight", {H * (nope_ + v_dim_), kv_rank_}});
  wo_ = table.add({a + "wo.weight", {dim_, H * v_dim_}});
  auto local = [this](void (MlaAttentionBlock::*fn)(Context&)) {
    return [this, fn](BlockContext& c) {
      (this->*fn)(static_cast<Context&>(c));
      return parallel::Work();
    };
  };
  pieces_.forward = {{"attention", false, local(&MlaAttentionBlock::ForwardPiece)}};
  pieces_.backward_input = {{"attention", false, local(&MlaAttentionBlock::BackwardInputPiece)}};
  pieces_.backward_weight = {
      {"attention weights", false, local(&MlaAttentionBlock::BackwardWeightPiece)}};
}

std::unique_ptr<BlockContext> MlaAttentionBlock::NewContext() const {
  return std::make_unique<Context>();
}

kernels::AttentionShape MlaAttentionBlock::shape(const MicroBatchInfo& mb) const {
  return {mb.batch, mb.seq_len, n_heads_, qk_head_dim()};
}

void MlaAttentionBlock::Carve(BlockContext& ctx, ActivationArena& arena) const {
  Context& c = static_cast<Context&>(ctx);
  const int64_t N = c.mb.tokens(), D = dim_, H = n_heads_, dk = qk_head_dim();
  const int64_t kv_width = H * (nope_ + v_dim_);
  const bool fp8 = precision_ == kernels::Precision::kFP8;
  c.rstd = arena.take<float>(N);
  c.xn = SavedActivation::Carve(arena, N, D, fp8);
  if (q_rank_ > 0) {
    c.q_a = arena.take<float>(N * q_rank_);
    c.q_rstd = arena.take<float>(N);
    c.q_an = SavedActivation::Carve(arena, N, q_rank_, fp8);
  }
  c.q = arena.take<float>(N * H * dk);
  c.c_kv = arena.take<float>(N * kv_rank_);
  c.kv_rstd = arena.take<float>(N);
  c.c_kvn = SavedActivation::Carve(arena, N, kv_rank_, fp8);
  c.k_pe = arena.take<float>(N * rope_);
  c.kv = arena.take<float>(N * kv_width);
  c.k = arena.take<float>(N * H * dk);
  c.v = arena.take<float>(N * H * dk);
  c.saved = arena.take<float>(kernels::attention_saved_numel(arena.device(), shape(c.mb)));
  c.out = arena.take<float>(N * H * dk);
  c.o = arena.take<float>(N * H * v_dim_);
  c.d_o = arena.take<float>(N * H * v_dim_);
  c.d_out = arena.take<float>(N * H * dk);
  c.dq = arena.take<float>(N * H * dk);
  c.dk = arena.take<float>(N * H * dk);
  c.dv = arena.take<float>(N * H * dk);
  c.dkv = arena.take<float>(N * kv_width);
  c.dc_kvn = arena.take<float>(N * kv_rank_);
  c.dc_kv = arena.take<float>(N * kv_rank_);
  c.dk_pe = arena.take<float>(N * rope_);
  if (q_rank_ > 0) {
    c.dq_an = arena.take<float>(N * q_rank_);
    c.dq_a = arena.take<float>(N * q_rank_);
  }
  c.dxn = arena.take<float>(N * D);
  c.scratch = arena.take<float>(kernels::attention_scratch_numel(arena.device(), shape(c.mb)));
}

void MlaAttentionBlock::ensure_rope(int64_t seq_len) {
  if (seq_len <= rope_len_) return;
  kernels::Backend& be = table_.backend();
  rope_cos_ = be.alloc({seq_len, rope_ / 2}, kernels::DType::kF32);
  rope_sin_ = be.alloc({seq_len, rope_ / 2}, kernels::DType::kF32);
  table_.ops().rope_table(rope_cos_.data<float>(), rope_sin_.data<float>(), seq_len, rope_,
                          theta_);
  rope_len_ = seq_len;
}

void MlaAttentionBlock::ForwardPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  const int64_t H = n_heads_, dk = qk_head_dim(), kv_head = nope_ + v_dim_;
  const float eps = static_cast<float>(eps_);
  kernels::BackendOps<float>& ops = table_.ops();
  ensure_rope(T);
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();
  const float* wkv_a = table_.value_ptr(wkv_a_);
  const float* xn = c.xn.values;
  ops.rmsnorm_forward(c.xn.values, c.rstd, c.x, table_.value_ptr(norm_), N, D, eps);
  // Queries, per head [q_nope; q_pe]; RoPE on each head's q_pe (one head per call: the rope op
  // takes heads of contiguous rope dims).
  if (q_rank_ > 0) {
    ops.linear_forward(c.q_a, q_rank_, xn, D, table_.value_ptr(wq_a_), N, D, q_rank_,
                       {.precision = precision_});
    ops.rmsnorm_forward(c.q_an.values, c.q_rstd, c.q_a, table_.value_ptr(q_norm_), N, q_rank_,
                        eps);
    ops.linear_forward(c.q, H * dk, c.q_an.values, q_rank_, table_.value_ptr(wq_b_), N, q_rank_,
                       H * dk, {.precision = precision_});
    c.q_an.Save(ops, N);
  } else {
    ops.linear_forward(c.q, H * dk, xn, D, table_.value_ptr(wq_), N, D, H * dk,
                       {.precision = precision_});
  }
  for (int64_t h = 0; h < H; ++h) {
    ops.rope_forward(c.q + h * dk + nope_, H * dk, cos, sin, B, T, 1, rope_);
  }
  // [c_kv; k_pe] = wkv_a xn, as two GEMMs over the weight's row blocks (contiguous outputs).
  ops.linear_forward(c.c_kv, kv_rank_, xn, D, wkv_a, N, D, kv_rank_, {.precision = precision_});
  ops.linear_forward(c.k_pe, rope_, xn, D, wkv_a + kv_rank_ * D, N, D, rope_,
                     {.precision = precision_});
  c.xn.Save(ops, N);
  ops.rope_forward(c.k_pe, rope_, cos, sin, B, T, 1, rope_);
  ops.rmsnorm_forward(c.c_kvn.values, c.kv_rstd, c.c_kv, table_.value_ptr(kv_norm_), N, kv_rank_,
                      eps);
  ops.linear_forward(c.kv, H * kv_head, c.c_kvn.values, kv_rank_, table_.value_ptr(wkv_b_), N,
                     kv_rank_, H * kv_head, {.precision = precision_});
  c.c_kvn.Save(ops, N);
  // k = [k_nope; k_pe] and v padded, one (token, head) per row.
  ops.copy_2d(c.k, dk, c.kv, kv_head, N * H, nope_, false);
  for (int64_t h = 0; h < H; ++h) {
    ops.copy_2d(c.k + h * dk + nope_, H * dk, c.k_pe, rope_, N, rope_, false);
  }
  ops.fill(c.v, 0.0f, N * H * dk);
  ops.copy_2d(c.v, dk, c.kv + nope_, kv_head, N * H, v_dim_, false);
  ops.attention_forward(c.out, H * dk, c.saved, c.q, c.k, c.v, H * dk, shape(c.mb));
  ops.copy_2d(c.o, v_dim_, c.out, dk, N * H, v_dim_, false);
  ops.copy(c.y, c.x, N * D);
  ops.linear_forward(c.y, D, c.o, H * v_dim_, table_.value_ptr(wo_), N, H * v_dim_, D,
                     {.accumulate = true, .precision = precision_});
}

void MlaAttentionBlock::BackwardInputPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, B = c.mb.batch, T = c.mb.seq_len;
  const int64_t H = n_heads_, dk = qk_head_dim(), kv_head = nope_ + v_dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  const float* cos = rope_cos_.data<float>();
  const float* sin = rope_sin_.data<float>();
  const float* wkv_a = table_.value_ptr(wkv_a_);
  ops.linear_backward_input(c.d_o, H * v_dim_, c.dy, D, table_.value_ptr(wo_), N, H * v_dim_, D, {.precision = precision_});
  // The padding columns of the output were dropped: their gradient is zero.
  ops.fill(c.d_out, 0.0f, N * H * dk);
  ops.copy_2d(c.d_out, dk, c.d_o, v_dim_, N * H, v_dim_, false);
  ops.attention_backward(c.dq, c.dk, c.dv, H * dk, c.scratch, c.d_out, c.out, H * dk, c.saved,
                         c.q, c.k, c.v, H * dk, shape(c.mb));
  // Unpack: dkv per head [dk_nope; dv], and dk_pe summed over the heads that shared k_pe.
  ops.copy_2d(c.dkv, kv_head, c.dk, dk, N * H, nope_, false);
  ops.copy_2d(c.dkv + nope_, kv_head, c.dv, dk, N * H, v_dim_, false);
  for (int64_t h = 0; h < H; ++h) {
    ops.copy_2d(c.dk_pe, rope_, c.dk + h * dk + nope_, H * dk, N, rope_, /*accumulate=*/h > 0);
  }
  ops.rope_backward(c.dk_pe, rope_, cos, sin, B, T, 1, rope_);
  for (int64_t h = 0; h < H; ++h) {
    ops.rope_backward(c.dq + h * dk + nope_, H * dk, cos, sin, B, T, 1, rope_);
  }
  ops.linear_backward_input(c.dc_kvn, kv_rank_, c.dkv, H * kv_head, table_.value_ptr(wkv_b_), N,
                            kv_rank_, H * kv_head, {.precision = precision_});
  ops.rmsnorm_backward_input(c.dc_kv, c.dc_kvn, c.c_kv, table_.value_ptr(kv_norm_), c.kv_rstd, N,
                             kv_rank_, /*accumulate=*/false);
  // dxn = dc_kv wkv_a[:Rkv] + dk_pe wkv_a[Rkv:] + (the query path's)
  ops.linear_backward_input(c.dxn, D, c.dc_kv, kv_rank_, wkv_a, N, D, kv_rank_, {.precision = precision_});
  ops.linear_backward_input(c.dxn, D, c.dk_pe, rope_, wkv_a + kv_rank_ * D, N, D, rope_,
                            {.accumulate = true, .precision = precision_});
  if (q_rank_ > 0) {
    ops.linear_backward_input(c.dq_an, q_rank_, c.dq, H * dk, table_.value_ptr(wq_b_), N,
                              q_rank_, H * dk, {.precision = precision_});
    ops.rmsnorm_backward_input(c.dq_a, c.dq_an, c.q_a, table_.value_ptr(q_norm_), c.q_rstd, N,
                               q_rank_, /*accumulate=*/false);
    ops.linear_backward_input(c.dxn, D, c.dq_a, q_rank_, table_.value_ptr(wq_a_), N, D, q_rank_,
                              {.accumulate = true, .precision = precision_});
  } else {
    ops.linear_backward_input(c.dxn, D, c.dq, H * dk, table_.value_ptr(wq_), N, D, H * dk,
                              {.accumulate = true, .precision = precision_});
  }
  ops.copy(c.dx, c.dy, N * D);
  ops.rmsnorm_backward_input(c.dx, c.dxn, c.x, table_.value_ptr(norm_), c.rstd, N, D,
                             /*accumulate=*/true);
}

void MlaAttentionBlock::BackwardWeightPiece(Context& c) {
  const int64_t N = c.mb.tokens(), D = dim_, H = n_heads_, dk = qk_head_dim();
  const int64_t kv_head = nope_ + v_dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  float* dwkv_a = table_.grad_ptr(wkv_a_);
  ops.linear_backward_weight(table_.grad_ptr(wo_), c.dy, D, c.o, H * v_dim_, N, H * v_dim_, D, precision_);
  ops.linear_backward_weight(table_.grad_ptr(wkv_b_), c.dkv, H * kv_head, c.c_kvn.Load(ops, N),
                             kv_rank_, N, kv_rank_, H * kv_head, precision_);
  ops.rmsnorm_backward_weight(table_.grad_ptr(kv_norm_), c.dc_kvn, c.c_kv, c.kv_rstd, N, kv_rank_);
  const float* xn = c.xn.Load(ops, N);
  ops.linear_backward_weight(dwkv_a, c.dc_kv, kv_rank_, xn, D, N, D, kv_rank_, precision_);
  ops.linear_backward_weight(dwkv_a + kv_rank_ * D, c.dk_pe, rope_, xn, D, N, D, rope_,
                             precision_);
  if (q_rank_ > 0) {
    ops.linear_backward_weight(table_.grad_ptr(wq_b_), c.dq, H * dk, c.q_an.Load(ops, N),
                               q_rank_, N, q_rank_, H * dk, precision_);
    ops.rmsnorm_backward_weight(table_.grad_ptr(q_norm_), c.dq_an, c.q_a, c.q_rstd, N, q_rank_);
    ops.linear_backward_weight(table_.grad_ptr(wq_a_), c.dq_a, q_rank_, xn, D, N, D, q_rank_,
                               precision_);
  } else {
    ops.linear_backward_weight(table_.grad_ptr(wq_), c.dq, H * dk, xn, D, N, D, H * dk,
                               precision_);
  }
  ops.rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn, c.x, c.rstd, N, D);
}

}  // namespace tessera::trainer
