#include "trainer/layers/embedding_layer.h"

#include "kernels/embedding.h"

namespace tessera::trainer {

EmbeddingLayer::EmbeddingLayer(ParamTable& table, const ModelConfig& config)
    : table_(table),
      dim_(config.dim),
      weight_(table.add({"embed.weight", {config.vocab_size, config.dim}})) {}

void EmbeddingLayer::Forward(const int32_t* ids, float* x, int64_t N) {
  kernels::embedding_forward(x, ids, table_.value_ptr(weight_), N, dim_);
}

void EmbeddingLayer::BackwardWeight(const int32_t* ids, const float* dx, int64_t N) {
  kernels::embedding_backward_weight(table_.grad_ptr(weight_), dx, ids, N, dim_);
}

}  // namespace tessera::trainer
