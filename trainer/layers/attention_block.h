// Attention sub-layer: y = x + Wo · Attn(RoPE(Wq n), RoPE(Wk n), Wv n), n = RMSNorm(x).
// wq, wk, wv are added to the ParamTable back to back, so they form one fused [3D, D]
// projection computed by a single GEMM.
#pragma once

#include <vector>

#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class AttentionBlock : public Block {
 public:
  // Adds layers.{layer}.attn_norm.weight and layers.{layer}.attn.{wq,wk,wv,wo}.weight.
  AttentionBlock(ParamTable& table, const ModelConfig& config, int layer);

  const std::string& name() const override { return name_; }
  void Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) override;
  void BackwardInput(int slot, const float* dy, float* dx) override;
  void BackwardWeight(int slot) override;

 private:
  struct Context {
    MicroBatchInfo mb;
    const float* x = nullptr;   // (N, D) input, owned by the caller
    const float* dy = nullptr;  // (N, D) output grad, owned by the caller
    kernels::Tensor rstd;       // (N)
    kernels::Tensor xn;         // (N, D) normed input
    kernels::Tensor qkv;        // (N, 3D) q|k|v after RoPE
    kernels::Tensor saved;      // what the backend's attention keeps for its backward
    kernels::Tensor attn;       // (N, D) attention output before wo
    kernels::Tensor dqkv;       // (N, 3D)
    kernels::Tensor dxn;        // (N, D)
    kernels::Tensor dattn;      // (N, D)
    kernels::Tensor scratch;    // the backend's attention backward workspace
  };
  Context& context(int slot);
  void ensure_rope(int64_t seq_len);

  ParamTable& table_;
  std::string name_;
  int64_t dim_, n_heads_, head_dim_;
  double eps_, theta_;
  int norm_, wq_, wo_;  // wk, wv follow wq contiguously
  std::vector<Context> contexts_;
  kernels::Tensor rope_cos_, rope_sin_;  // (T, hd/2)
  int64_t rope_len_ = 0;
};

}  // namespace tessera::trainer
