// Output head: final RMSNorm, untied linear head to the vocabulary, cross-entropy.
// The loss it reports is sum over tokens of CE times token_scale (1 / tokens of the global
// batch), so summing micro-batches gives the global mean.
#pragma once

#include <vector>

#include "kernels/tensor.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class OutputHead {
 public:
  OutputHead(ParamTable& table, const ModelConfig& config);  // adds norm.weight, head.weight

  // Returns the scaled loss of this micro-batch (sum of CE * token_scale). x must stay valid
  // until BackwardWeight(slot).
  double Forward(int slot, const float* x, const int32_t* targets, int64_t N, double token_scale);
  // Sum of unscaled per-token CE of the last Forward (for reporting), in double.
  double ce_sum(int slot) const { return contexts_.at(slot).ce_sum; }
  void BackwardInput(int slot, float* dx);  // dx (N, D) written
  void BackwardWeight(int slot);

 private:
  struct Context {
    int64_t N = 0;
    double token_scale = 0, ce_sum = 0;
    const float* x = nullptr;
    const int32_t* targets = nullptr;
    kernels::Tensor rstd, xn, logits, losses, lse, dxn;  // logits become dlogits in backward
  };
  ParamTable& table_;
  int64_t dim_, vocab_;
  double eps_;
  int norm_, head_;
  std::vector<Context> contexts_;
};

}  // namespace tessera::trainer
