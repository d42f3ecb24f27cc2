// Output head: final RMSNorm, untied linear head to the vocabulary, cross-entropy.
// The loss it reports is sum over tokens of CE times token_scale (1 / tokens of the global
// batch), so summing micro-batches gives the global mean. The caller keeps the per-micro-batch
// Context, its buffers carved from the caller's arena.
#pragma once

#include <cstdint>

#include "trainer/activation_arena.h"
#include "trainer/layers/normed_head_loss.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class OutputHead {
 public:
  OutputHead(ParamTable& table, const ModelConfig& config);  // adds norm.weight, head.weight

  using Context = NormedHeadLoss::Buffers;  // scale = token_scale
  void Carve(Context& c, ActivationArena& arena, int64_t N) const { loss_.Carve(c, arena, N); }

  // Returns the scaled loss of this micro-batch (sum of CE * token_scale). x and targets must
  // stay valid until BackwardWeight.
  double Forward(Context& c, const float* x, const int32_t* targets, double token_scale) const {
    return loss_.Forward(c, x, targets, token_scale);
  }
  // dx (N, D) written. dxn_extra (optional, (N, D)): another gradient for the normed output
  // (multi-token prediction reads it too).
  void BackwardInput(Context& c, float* dx, const float* dxn_extra = nullptr) const {
    loss_.BackwardInput(c, dx, dxn_extra);
  }
  void BackwardWeight(Context& c) const { loss_.BackwardWeight(c); }

 private:
  int norm_, head_;
  NormedHeadLoss loss_;
};

}  // namespace tessera::trainer
