// SwiGLU MLP: y = W2 (silu(W1 n) * W3 n), without norm or residual. Serves the dense FFN and
// the MoE shared experts. W1 and W3 are added back to back so [W1; W3] is one [2F, D] GEMM.
// The owner keeps the per-micro-batch Buffers (carved from its arena) and the input n. With
// precision fp8 the SwiGLU input (W1 n | W3 n) is kept in fp8 and the output recomputed from it
// for W2's weight gradient, as DeepSeek-V3 does (trainer/layers/saved_activation.h).
#pragma once

#include <string>

#include "trainer/activation_arena.h"
#include "trainer/layers/saved_activation.h"
#include "trainer/param_table.h"

namespace tessera::trainer {

class SwigluMlp {
 public:
  // Adds {prefix}w1{suffix} [F, D], {prefix}w3{suffix} [F, D], {prefix}w2{suffix} [D, F].
  SwigluMlp(ParamTable& table, const std::string& prefix, const std::string& suffix, int64_t dim,
            int64_t hidden, kernels::Precision precision);

  struct Buffers {
    SavedActivation ab;    // (N, 2F) = W1 n | W3 n
    float* h = nullptr;    // (N, F): saved, or (fp8) transient and recomputed
    float* dh = nullptr;   // (N, F)
    float* dab = nullptr;  // (N, 2F)
  };
  Buffers Carve(ActivationArena& arena, int64_t N) const;
  bool fp8() const { return precision_ == kernels::Precision::kFP8; }

  // y (N, D) = MLP(n) when accumulate is false, y += MLP(n) otherwise.
  void Forward(const Buffers& b, const float* n, float* y, int64_t N, bool accumulate) const;
  // dn (N, D) = or += d/dn given dy (N, D).
  void BackwardInput(const Buffers& b, const float* dy, float* dn, int64_t N,
                     bool accumulate) const;
  // Weight gradients; n and dy as passed to Forward and BackwardInput.
  void BackwardWeight(const Buffers& b, const float* n, const float* dy, int64_t N) const;

 private:
  ParamTable& table_;
  int64_t dim_, hidden_;
  int w1_, w2_;  // w3 follows w1
  kernels::Precision precision_;
};

}  // namespace tessera::trainer
