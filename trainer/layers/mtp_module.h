// One multi-token-prediction module (DeepSeek-V3 section 2.2; DESIGN.md "Model"), depth k = d + 1:
//   h' = eh_proj([enorm(embed(t_{i+k})); hnorm(h^{k-1}_i)])      (the embedding half first)
//   z  = one transformer block (attention, then dense FFN or MoE as layer n_layers + d would be)
//   h^k = norm(z);   L_k = mean CE of head(h^k_i) predicting t_{i+k+1}
// The embedding and the head are the main model's (tied): this module adds only
// mtp.{d}.{enorm,hnorm,norm,eh_proj}.weight and its block's mtp.{d}.block.* parameters.
//
// The module is driven in phases around its two blocks, which the caller runs piece by piece
// (so their exchanges overlap like any other block's):
//   forward:   InputForward -> blocks' forward (h_in -> mid -> z) -> OutputForward
//   backward:  OutputBackward -> blocks' backward (dz -> dmid -> dh_in) -> InputBackward
//   weights:   OutputWeights, blocks' weight pieces, InputWeights
// State lives in a Context the caller owns (one per micro-batch in flight), carved from its arena.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "trainer/activation_arena.h"
#include "trainer/layers/block.h"
#include "trainer/layers/normed_head_loss.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class MtpModule {
 public:
  // depth index d = k - 1. embed, head: the indices of embed.weight and head.weight in `table`
  // (already added). The block's MoE (if any) holds this rank's expert slice as the main MoE
  // layers do.
  MtpModule(ParamTable& table, const ModelConfig& config, int d, int embed, int head, int ep = 1,
            int ep_rank = 0, parallel::Comm* ep_comm = nullptr,
            parallel::Comm* ep_host_comm = nullptr);

  struct Context {
    int64_t N = 0;
    std::unique_ptr<BlockContext> attn, ffn;
    const float* h_prev = nullptr;     // h^{k-1} (N, D), caller-owned
    const int32_t* ids = nullptr;      // t_{i+k} (N), device
    float *e = nullptr, *e_rstd = nullptr, *h_rstd = nullptr;  // embed(ids); norms' rstd
    float *en = nullptr, *hn = nullptr;  // (N, D) enorm(e), hnorm(h_prev)
    float* cat = nullptr;     // (N, 2D) [en; hn]: eh_proj's input
    float* h_in = nullptr;    // (N, D) eh_proj(cat): the block's input
    float* mid = nullptr;     // (N, D) between attention and FFN
    float* z = nullptr;       // (N, D) the block's output
    // norm(z) -> head -> CE: out.xn is h^k, out.dxn dL/dh^k (head, plus the next depth's
    // hnorm), out.scale token scale * lambda / D, out.ce_sum this depth's CE (for mtp_loss).
    NormedHeadLoss::Buffers out;
    float* dz = nullptr;      // (N, D)
    float* dmid = nullptr;    // (N, D)
    float* dh_in = nullptr;   // (N, D)
    float* dcat = nullptr;    // (N, 2D)
    float *den = nullptr, *dhn = nullptr;  // (N, D) its two halves
    float* de = nullptr;      // (N, D) dL/d embed(ids)
  };
  std::unique_ptr<Context> NewContext() const;
  void Carve(Context& c, ActivationArena& arena, const MicroBatchInfo& mb) const;

  const Block& attention() const { return *attention_; }
  const Block& ffn() const { return *ffn_; }

  void InputForward(Context& c, const float* h_prev, const int32_t* ids) const;
  // Returns the scaled loss (out.ce_sum * ce_scale).
  double OutputForward(Context& c, const int32_t* targets, double ce_scale) const;
  // dh_next: the next depth's gradient for h^k (nullptr for the last depth). Writes c.dz.
  void OutputBackward(Context& c, const float* dh_next) const;
  // From c.dh_in: writes dh_prev (N, D), the gradient this depth sends to h^{k-1}.
  void InputBackward(Context& c, float* dh_prev) const;
  void OutputWeights(Context& c) const;  // head and norm
  void InputWeights(Context& c) const;   // eh_proj, enorm, hnorm, embedding

 private:
  ParamTable& table_;
  int64_t dim_, vocab_;
  double eps_;
  kernels::Precision precision_;  // eh_proj's; the head stays fp32
  int embed_, head_;
  int enorm_, hnorm_, eh_proj_, norm_;
  std::unique_ptr<Block> attention_, ffn_;
  std::unique_ptr<NormedHeadLoss> out_;  // norm_ and the shared head_
};

}  // namespace tessera::trainer
