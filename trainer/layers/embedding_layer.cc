#include "trainer/layers/embedding_layer.h"


namespace tessera::trainer {

EmbeddingLayer::EmbeddingLayer(ParamTable& table, const ModelConfig& config)
    : table_(table),
      dim_(config.dim),
      vocab_(config.vocab_size),
      weight_(table.add({"embed.weight", {config.vocab_size, config.dim}})) {}

void EmbeddingLayer::Forward(const int32_t* ids, float* x, int64_t N) {
  table_.ops().embedding_forward(x, ids, table_.value_ptr(weight_), N, dim_, vocab_);
}

void EmbeddingLayer::BackwardWeight(const int32_t* ids, const float* dx, int64_t N) {
  table_.ops().embedding_backward_weight(table_.grad_ptr(weight_), dx, ids, N, dim_, vocab_);
}

}  // namespace tessera::trainer
