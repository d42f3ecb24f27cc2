#include "trainer/model.h"

#include "trainer/layers/attention_block.h"
#include "trainer/layers/buffer.h"
#include "trainer/layers/dense_ffn_block.h"

namespace tessera::trainer {

Model::Model(const ModelConfig& config) : config_(config) {
  // Parameters are added in DESIGN.md order; the ParamTable layout follows.
  embedding_ = std::make_unique<EmbeddingLayer>(params_, config);
  for (int i = 0; i < config.n_layers; ++i) {
    blocks_.push_back(std::make_unique<AttentionBlock>(params_, config, i));
    if (i < config.first_dense_layers) {
      blocks_.push_back(std::make_unique<DenseFfnBlock>(params_, config, i));
    } else {
      auto moe = std::make_unique<MoeBlock>(params_, config, i);
      moe_blocks_.push_back(moe.get());
      blocks_.push_back(std::move(moe));
    }
  }
  head_ = std::make_unique<OutputHead>(params_, config);
  params_.finalize();
}

MicroBatchLoss Model::Forward(int slot, const int32_t* tokens, int64_t batch, int64_t seq_len,
                              const LossScale& scale, bool training) {
  if (slot >= static_cast<int>(slots_.size())) slots_.resize(slot + 1);
  Slot& s = slots_[slot];
  const int64_t N = batch * seq_len, D = config_.dim;
  const int64_t n_bounds = static_cast<int64_t>(blocks_.size()) + 1;
  s.N = N;
  int32_t* inputs = ensure_ints(s.inputs, N);
  int32_t* targets = ensure_ints(s.targets, N);
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* row = tokens + b * (seq_len + 1);
    for (int64_t t = 0; t < seq_len; ++t) {
      inputs[b * seq_len + t] = row[t];
      targets[b * seq_len + t] = row[t + 1];
    }
  }
  float* acts = ensure_floats(s.acts, n_bounds * N * D);

  MicroBatchInfo mb{batch, seq_len, training, scale.sequence_scale};
  embedding_->Forward(inputs, acts, N);
  MicroBatchLoss out;
  out.tokens = N;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    blocks_[i]->Forward(slot, mb, acts + i * N * D, acts + (i + 1) * N * D);
    out.aux += blocks_[i]->aux_loss(slot);
  }
  const double ce = head_->Forward(slot, acts + blocks_.size() * N * D, targets, N,
                                   scale.token_scale);
  out.ce_sum = head_->ce_sum(slot);
  out.loss = ce + out.aux;
  return out;
}

void Model::Backward(int slot) {
  Slot& s = slots_.at(slot);
  const int64_t N = s.N, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(blocks_.size());
  float* grads = ensure_floats(s.grads, (n_blocks + 1) * N * D);
  head_->BackwardInput(slot, grads + n_blocks * N * D);
  head_->BackwardWeight(slot);
  for (int64_t i = n_blocks - 1; i >= 0; --i) {
    blocks_[i]->BackwardInput(slot, grads + (i + 1) * N * D, grads + i * N * D);
    blocks_[i]->BackwardWeight(slot);
  }
  embedding_->BackwardWeight(s.inputs.data<int32_t>(), grads, N);
}

MicroBatchLoss Model::TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                      const LossScale& scale) {
  MicroBatchLoss loss = Forward(0, tokens, batch, seq_len, scale, /*training=*/true);
  Backward(0);
  return loss;
}

MicroBatchLoss Model::EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                     const LossScale& scale) {
  return Forward(0, tokens, batch, seq_len, scale, /*training=*/false);
}

}  // namespace tessera::trainer
