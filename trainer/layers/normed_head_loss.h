// NormedHeadLoss: RMSNorm -> linear head to the vocabulary -> cross-entropy, forward and backward.
// The main model's output head and each multi-token-prediction depth's (DeepSeek-V3 section 2.2)
// are this, each with its own norm and the shared head. The loss is the sum over tokens of CE
// times `scale`, so summing micro-batches gives the global mean.
#pragma once

#include <cstdint>

#include "trainer/activation_arena.h"
#include "trainer/param_table.h"

namespace tessera::trainer {

class NormedHeadLoss {
 public:
  // norm, head: indices of the norm's (dim) and the head's (vocab, dim) weights in `table`.
  NormedHeadLoss(ParamTable& table, int norm, int head, int64_t dim, int64_t vocab, double eps);

  // One micro-batch's state, carved from the caller's arena.
  struct Buffers {
    int64_t N = 0;
    double scale = 0;   // d loss / d (sum of CE)
    double ce_sum = 0;  // unscaled sum of per-token CE of the forward (for reporting)
    const float* x = nullptr;          // the norm's input (N, D), caller-owned
    const int32_t* targets = nullptr;  // (N)
    float *rstd = nullptr, *xn = nullptr;  // norm(x) (N, D)
    float *logits = nullptr, *losses = nullptr, *lse = nullptr;  // logits become dlogits
    float* dxn = nullptr;  // (N, D) d loss / d xn (the head's, plus any extra)
  };
  void Carve(Buffers& b, ActivationArena& arena, int64_t N) const;

  // Returns the scaled loss (ce_sum * scale). x and targets must stay valid until Weights.
  double Forward(Buffers& b, const float* x, const int32_t* targets, double scale) const;
  // Writes dx (N, D). dxn_extra (optional, (N, D)): another gradient for xn (the next MTP
  // depth reads it).
  void BackwardInput(Buffers& b, float* dx, const float* dxn_extra) const;
  void BackwardWeight(Buffers& b) const;  // head and norm

 private:
  ParamTable& table_;
  int norm_, head_;
  int64_t dim_, vocab_;
  double eps_;
};

}  // namespace tessera::trainer
