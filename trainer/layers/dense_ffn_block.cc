#include "trainer/layers/dense_ffn_block.h"

#include <cstring>

#include "kernels/rmsnorm.h"
#include "trainer/layers/buffer.h"

namespace tessera::trainer {

namespace {
std::string layer_prefix(int layer) { return "layers." + std::to_string(layer) + "."; }
}  // namespace

DenseFfnBlock::DenseFfnBlock(ParamTable& table, const ModelConfig& config, int layer)
    : table_(table),
      name_(layer_prefix(layer) + "ffn"),
      dim_(config.dim),
      eps_(config.norm_eps),
      norm_(table.add({layer_prefix(layer) + "ffn_norm.weight", {config.dim}, ParamInit::kOnes,
                       false})),
      mlp_(table, layer_prefix(layer) + "ffn.", ".weight", config.dim, config.inter_dim) {}

void DenseFfnBlock::Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) {
  if (slot >= static_cast<int>(contexts_.size())) contexts_.resize(slot + 1);
  Context& c = contexts_[slot];
  c.N = mb.tokens();
  c.x = x;
  const int64_t N = c.N, D = dim_;
  float* rstd = ensure_floats(c.rstd, N);
  float* xn = ensure_floats(c.xn, N * D);
  kernels::rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  std::memcpy(y, x, sizeof(float) * N * D);
  mlp_.Forward(slot, xn, y, N, /*accumulate=*/true);
}

void DenseFfnBlock::BackwardInput(int slot, const float* dy, float* dx) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_;
  float* dxn = ensure_floats(c.dxn, N * D);
  mlp_.BackwardInput(slot, dy, dxn, /*accumulate=*/false);
  std::memcpy(dx, dy, sizeof(float) * N * D);
  kernels::rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                                  /*accumulate=*/true);
}

void DenseFfnBlock::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  mlp_.BackwardWeight(slot);
  kernels::rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                                   c.rstd.data<float>(), c.N, dim_);
}

}  // namespace tessera::trainer
