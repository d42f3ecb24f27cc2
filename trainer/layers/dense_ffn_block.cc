#include "trainer/layers/dense_ffn_block.h"

namespace tessera::trainer {

DenseFfnBlock::DenseFfnBlock(ParamTable& table, const ModelConfig& config,
                             const std::string& prefix)
    : table_(table),
      name_(prefix + "ffn"),
      dim_(config.dim),
      eps_(config.norm_eps),
      norm_(table.add({prefix + "ffn_norm.weight", {config.dim}, ParamInit::kOnes,
                       false})),
      mlp_(table, prefix + "ffn.", ".weight", config.dim, config.inter_dim,
           config.block_precision) {
  auto local = [this](void (DenseFfnBlock::*fn)(Context&) const) {
    return [this, fn](BlockContext& c) {
      (this->*fn)(static_cast<Context&>(c));
      return parallel::Work();
    };
  };
  pieces_.forward = {{"ffn", false, local(&DenseFfnBlock::ForwardPiece)}};
  pieces_.backward_input = {{"ffn", false, local(&DenseFfnBlock::BackwardInputPiece)}};
  pieces_.backward_weight = {{"ffn weights", false, local(&DenseFfnBlock::BackwardWeightPiece)}};
}

std::unique_ptr<BlockContext> DenseFfnBlock::NewContext() const {
  return std::make_unique<Context>();
}

void DenseFfnBlock::Carve(BlockContext& ctx, ActivationArena& arena) const {
  Context& c = static_cast<Context&>(ctx);
  const int64_t N = c.mb.tokens(), D = dim_;
  c.rstd = arena.take<float>(N);
  c.xn = SavedActivation::Carve(arena, N, D, mlp_.fp8());
  c.dxn = arena.take<float>(N * D);
  c.mlp = mlp_.Carve(arena, N);
}

void DenseFfnBlock::ForwardPiece(Context& c) const {
  const int64_t N = c.mb.tokens(), D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.rmsnorm_forward(c.xn.values, c.rstd, c.x, table_.value_ptr(norm_), N, D,
                      static_cast<float>(eps_));
  ops.copy(c.y, c.x, N * D);
  mlp_.Forward(c.mlp, c.xn.values, c.y, N, /*accumulate=*/true);
  c.xn.Save(ops, N);
}

void DenseFfnBlock::BackwardInputPiece(Context& c) const {
  const int64_t N = c.mb.tokens(), D = dim_;
  kernels::BackendOps<float>& ops = table_.ops();
  mlp_.BackwardInput(c.mlp, c.dy, c.dxn, N, /*accumulate=*/false);
  ops.copy(c.dx, c.dy, N * D);
  ops.rmsnorm_backward_input(c.dx, c.dxn, c.x, table_.value_ptr(norm_), c.rstd, N, D,
                             /*accumulate=*/true);
}

void DenseFfnBlock::BackwardWeightPiece(Context& c) const {
  mlp_.BackwardWeight(c.mlp, c.xn.Load(table_.ops(), c.mb.tokens()), c.dy, c.mb.tokens());
  table_.ops().rmsnorm_backward_weight(table_.grad_ptr(norm_), c.dxn, c.x, c.rstd,
                                       c.mb.tokens(), dim_);
}

}  // namespace tessera::trainer
