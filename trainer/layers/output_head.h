// Output head: final RMSNorm, untied linear head to the vocabulary, cross-entropy.
// The loss it reports is sum over tokens of CE times token_scale (1 / tokens of the global
// batch), so summing micro-batches gives the global mean. The caller keeps the per-micro-batch
// Context, its buffers carved from the caller's arena.
#pragma once

#include <cstdint>

#include "trainer/activation_arena.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class OutputHead {
 public:
  OutputHead(ParamTable& table, const ModelConfig& config);  // adds norm.weight, head.weight

  struct Context {
    int64_t N = 0;
    double token_scale = 0;
    double ce_sum = 0;  // unscaled sum of per-token CE of the forward (for reporting)
    const float* x = nullptr;
    const int32_t* targets = nullptr;
    float *rstd = nullptr, *xn = nullptr, *logits = nullptr, *losses = nullptr, *lse = nullptr,
          *dxn = nullptr;  // logits become dlogits in the backward
  };
  void Carve(Context& c, ActivationArena& arena, int64_t N) const;

  // Returns the scaled loss of this micro-batch (sum of CE * token_scale). x and targets must
  // stay valid until BackwardWeight.
  double Forward(Context& c, const float* x, const int32_t* targets, double token_scale) const;
  // dx (N, D) written. dxn_extra (optional, (N, D)): another gradient for the normed output
  // (multi-token prediction reads it too).
  void BackwardInput(Context& c, float* dx, const float* dxn_extra = nullptr) const;
  void BackwardWeight(Context& c) const;

 private:
  ParamTable& table_;
  int64_t dim_, vocab_;
  double eps_;
  int norm_, head_;
};

}  // namespace tessera::trainer
