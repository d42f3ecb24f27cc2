// Attention sub-layer: y = x + Wo · Attn(RoPE(Wq n), RoPE(Wk n), Wv n), n = RMSNorm(x).
// wq, wk, wv are added to the ParamTable back to back, so they form one fused [3D, D]
// projection computed by a single GEMM. One local piece per phase ("attention").
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/layers/saved_activation.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class AttentionBlock : public Block {
 public:
  // Adds, under `prefix` ("layers.{i}." or "mtp.{d}.block."), attn_norm.weight and
  // attn.{wq,wk,wv,wo}.weight.
  AttentionBlock(ParamTable& table, const ModelConfig& config, const std::string& prefix);
  AttentionBlock(ParamTable&, const ModelConfig&, int) = delete;  // a layer number is no prefix

  const std::string& name() const override { return name_; }
  std::unique_ptr<BlockContext> NewContext() const override;
  void Carve(BlockContext& ctx, ActivationArena& arena) const override;
  const BlockPieces& pieces() const override { return pieces_; }

 private:
  struct Context : BlockContext {
    float* rstd = nullptr;     // (N)
    SavedActivation xn;        // (N, D) normed input, wq|wk|wv's
    float* qkv = nullptr;      // (N, 3D) q|k|v after RoPE
    float* saved = nullptr;    // what the backend's attention keeps for its backward
    float* attn = nullptr;     // (N, D) attention output before wo
    float* dattn = nullptr;    // (N, D)
    float* dqkv = nullptr;     // (N, 3D)
    float* dxn = nullptr;      // (N, D)
    float* scratch = nullptr;  // the backend's attention backward workspace
  };
  kernels::AttentionShape shape(const MicroBatchInfo& mb) const;
  void ensure_rope(int64_t seq_len);
  void ForwardPiece(Context& c);
  void BackwardInputPiece(Context& c);
  void BackwardWeightPiece(Context& c);

  ParamTable& table_;
  std::string name_;
  int64_t dim_, n_heads_, head_dim_;
  double eps_, theta_;
  kernels::Precision precision_;  // of the projections; the attention core stays fp32
  int norm_, wq_, wo_;  // wk, wv follow wq contiguously
  kernels::Tensor rope_cos_, rope_sin_;  // (T, hd/2): constants, grown to the longest sequence
  int64_t rope_len_ = 0;
  BlockPieces pieces_;
};

}  // namespace tessera::trainer
