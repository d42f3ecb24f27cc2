// Dense FFN sub-layer: y = x + SwiGLU(RMSNorm(x)), for layers i < first_dense_layers.
// One local piece per phase.
#pragma once

#include <memory>
#include <string>

#include "trainer/layers/block.h"
#include "trainer/layers/saved_activation.h"
#include "trainer/layers/swiglu_mlp.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class DenseFfnBlock : public Block {
 public:
  // Adds, under `prefix` ("layers.{i}." or "mtp.{d}.block."), ffn_norm.weight and
  // ffn.{w1,w3,w2}.weight.
  DenseFfnBlock(ParamTable& table, const ModelConfig& config, const std::string& prefix);
  DenseFfnBlock(ParamTable&, const ModelConfig&, int) = delete;  // a layer number is no prefix

  const std::string& name() const override { return name_; }
  std::unique_ptr<BlockContext> NewContext() const override;
  void Carve(BlockContext& ctx, ActivationArena& arena) const override;
  const BlockPieces& pieces() const override { return pieces_; }

 private:
  struct Context : BlockContext {
    float* rstd = nullptr;  // (N)
    SavedActivation xn;     // (N, D)
    float* dxn = nullptr;   // (N, D)
    SwigluMlp::Buffers mlp;
  };
  void ForwardPiece(Context& c) const;
  void BackwardInputPiece(Context& c) const;
  void BackwardWeightPiece(Context& c) const;

  ParamTable& table_;
  std::string name_;
  int64_t dim_;
  double eps_;
  int norm_;
  SwigluMlp mlp_;
  BlockPieces pieces_;
};

}  // namespace tessera::trainer
