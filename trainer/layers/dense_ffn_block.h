// Dense FFN sub-layer: y = x + SwiGLU(RMSNorm(x)), for layers i < first_dense_layers.
#pragma once

#include <vector>

#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/layers/swiglu_mlp.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class DenseFfnBlock : public Block {
 public:
  // Adds layers.{layer}.ffn_norm.weight and layers.{layer}.ffn.{w1,w3,w2}.weight.
  DenseFfnBlock(ParamTable& table, const ModelConfig& config, int layer);

  const std::string& name() const override { return name_; }
  void Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) override;
  void BackwardInput(int slot, const float* dy, float* dx) override;
  void BackwardWeight(int slot) override;

 private:
  struct Context {
    int64_t N = 0;
    const float* x = nullptr;
    kernels::Tensor rstd, xn, dxn;
  };
  ParamTable& table_;
  std::string name_;
  int64_t dim_;
  double eps_;
  int norm_;
  SwigluMlp mlp_;
  std::vector<Context> contexts_;
};

}  // namespace tessera::trainer
