// Token embedding: x = embed.weight[tokens]. No input gradient (tokens are ids).
#pragma once

#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class EmbeddingLayer {
 public:
  EmbeddingLayer(ParamTable& table, const ModelConfig& config);  // adds embed.weight [V, D]
  void Forward(const int32_t* ids, float* x, int64_t N);   // x (N, D)
  // Weight gradient from dx (N, D); ids and dx as passed for the same micro-batch.
  void BackwardWeight(const int32_t* ids, const float* dx, int64_t N);

 private:
  ParamTable& table_;
  int64_t dim_, vocab_;
  int weight_;
};

}  // namespace tessera::trainer
