#include "trainer/layers/mtp_module.h"

#include "trainer/layers/transformer_layer.h"

namespace tessera::trainer {

MtpModule::MtpModule(ParamTable& table, const ModelConfig& config, int d, int embed, int head,
                     int ep, int ep_rank, parallel::Comm* ep_comm, parallel::Comm* ep_host_comm)
    : table_(table),
      dim_(config.dim),
      vocab_(config.vocab_size),
      eps_(config.norm_eps),
      precision_(config.block_precision),
      embed_(embed),
      head_(head) {
  const std::string p = "mtp." + std::to_string(d) + ".";
  const int64_t D = dim_;
  enorm_ = table.add({p + "enorm.weight", {D}, ParamInit::kOnes, false});
  hnorm_ = table.add({p + "hnorm.weight", {D}, ParamInit::kOnes, false});
  eh_proj_ = table.add({p + "eh_proj.weight", {D, 2 * D}});
  const int layer = static_cast<int>(config.n_layers) + d;  // dense or MoE as its position says
  attention_ = make_attention_block(table, config, p + "block.");
  ffn_ = make_ffn_block(table, config, p + "block.", layer, ep, ep_rank, ep_comm, ep_host_comm);
  norm_ = table.add({p + "norm.weight", {D}, ParamInit::kOnes, false});
  out_ = std::make_unique<NormedHeadLoss>(table, norm_, head_, D, vocab_, eps_);
}

std::unique_ptr<MtpModule::Context> MtpModule::NewContext() const {
  auto c = std::make_unique<Context>();
  c->attn = attention_->NewContext();
  c->ffn = ffn_->NewContext();
  return c;
}

void MtpModule::Carve(Context& c, ActivationArena& arena, const MicroBatchInfo& mb) const {
  const int64_t N = mb.tokens(), D = dim_;
  c.N = N;
  c.e = arena.take<float>(N * D);
  c.e_rstd = arena.take<float>(N);
  c.h_rstd = arena.take<float>(N);
  c.en = arena.take<float>(N * D);
  c.hn = arena.take<float>(N * D);
  c.cat = arena.take<float>(N * 2 * D);
  c.h_in = arena.take<float>(N * D);
  c.mid = arena.take<float>(N * D);
  c.z = arena.take<float>(N * D);
  out_->Carve(c.out, arena, N);
  c.dz = arena.take<float>(N * D);
  c.dmid = arena.take<float>(N * D);
  c.dh_in = arena.take<float>(N * D);
  c.dcat = arena.take<float>(N * 2 * D);
  c.den = arena.take<float>(N * D);
  c.dhn = arena.take<float>(N * D);
  c.de = arena.take<float>(N * D);
  attention_->Prepare(*c.attn, arena, mb);
  ffn_->Prepare(*c.ffn, arena, mb);
}

void MtpModule::InputForward(Context& c, const float* h_prev, const int32_t* ids) const {
  const int64_t N = c.N, D = dim_;
  const float eps = static_cast<float>(eps_);
  kernels::BackendOps<float>& ops = table_.ops();
  c.h_prev = h_prev;
  c.ids = ids;
  ops.embedding_forward(c.e, ids, table_.value_ptr(embed_), N, D, vocab_);
  ops.rmsnorm_forward(c.en, c.e_rstd, c.e, table_.value_ptr(enorm_), N, D, eps);
  ops.rmsnorm_forward(c.hn, c.h_rstd, h_prev, table_.value_ptr(hnorm_), N, D, eps);
  ops.copy_2d(c.cat, 2 * D, c.en, D, N, D, false);
  ops.copy_2d(c.cat + D, 2 * D, c.hn, D, N, D, false);
  ops.linear_forward(c.h_in, D, c.cat, 2 * D, table_.value_ptr(eh_proj_), N, 2 * D, D,
                     {.precision = precision_});
}

double MtpModule::OutputForward(Context& c, const int32_t* targets, double ce_scale) const {
  return out_->Forward(c.out, c.z, targets, ce_scale);
}

void MtpModule::OutputBackward(Context& c, const float* dh_next) const {
  out_->BackwardInput(c.out, c.dz, dh_next);
}

void MtpModule::InputBackward(Context& c, float* dh_prev) const {
  const int64_t N = c.N, D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_input(c.dcat, 2 * D, c.dh_in, D, table_.value_ptr(eh_proj_), N, 2 * D, D,
                            {.precision = precision_});
  ops.copy_2d(c.den, D, c.dcat, 2 * D, N, D, false);
  ops.copy_2d(c.dhn, D, c.dcat + D, 2 * D, N, D, false);
  ops.rmsnorm_backward_input(c.de, c.den, c.e, table_.value_ptr(enorm_), c.e_rstd, N, D,
                             /*accumulate=*/false);
  ops.rmsnorm_backward_input(dh_prev, c.dhn, c.h_prev, table_.value_ptr(hnorm_), c.h_rstd, N, D,
                             /*accumulate=*/false);
}

void MtpModule::OutputWeights(Context& c) const { out_->BackwardWeight(c.out); }

void MtpModule::InputWeights(Context& c) const {
  const int64_t N = c.N, D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_weight(table_.grad_ptr(eh_proj_), c.dh_in, D, c.cat, 2 * D, N, 2 * D, D,
                             precision_);
  ops.rmsnorm_backward_weight(table_.grad_ptr(enorm_), c.den, c.e, c.e_rstd, N, D);
  ops.rmsnorm_backward_weight(table_.grad_ptr(hnorm_), c.dhn, c.h_prev, c.h_rstd, N, D);
  ops.embedding_backward_weight(table_.grad_ptr(embed_), c.de, c.ids, N, D, vocab_);
}

}  // namespace tessera::trainer
