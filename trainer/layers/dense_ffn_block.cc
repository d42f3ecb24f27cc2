#include "trainer/layers/dense_ffn_block.h"

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
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* rstd = ensure_floats(be, c.rstd, N);
  float* xn = ensure_floats(be, c.xn, N * D);
  ops.rmsnorm_forward(xn, rstd, x, table_.value_ptr(norm_), N, D, static_cast<float>(eps_));
  ops.copy(y, x, N * D);
  mlp_.Forward(slot, xn, y, N, /*accumulate=*/true);
}

void DenseFfnBlock::BackwardInput(int slot, const float* dy, float* dx) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  float* dxn = ensure_floats(table_.backend(), c.dxn, N * D);
  mlp_.BackwardInput(slot, dy, dxn, /*accumulate=*/false);
  ops.copy(dx, dy, N * D);
  ops.rmsnorm_backward_input(dx, dxn, c.x, table_.value_ptr(norm_), c.rstd.data<float>(), N, D,
                                  /*accumulate=*/true);
}

void DenseFfnBlock::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  mlp_.BackwardWeight(slot);
  table_.ops().rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn.data<float>(), c.x,
                                   c.rstd.data<float>(), c.N, dim_);
}

}  // namespace tessera::trainer
