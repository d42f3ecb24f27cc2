// MoE sub-layer (DeepSeek-V3): y = x + Shared(n) + sum_j gate_j * Expert_{e_j}(n), n = RMSNorm(x).
// Routing: sigmoid affinities, group-limited top-k on (scores + gate.bias); gate.bias is not
// trained by gradients but nudged after each optimizer step towards balanced load
// (aux-loss-free balancing). The optional sequence-wise balance loss adds its gradient to the
// router in BackwardInput.
//
// The forward is staged as DESIGN.md's overlap needs: route (local) -> dispatch -> experts
// (local) -> combine. In one process dispatch and combine are the permutation itself. With
// expert parallelism (ep > 1) this rank holds routed experts [ep_rank*E/ep, (ep_rank+1)*E/ep)
// and the permuted rows travel to their experts' owners and back by all-to-all over the EP group
// (parallel/expert_dispatch.h); the backward sends gradients the reverse way. Routing, the shared
// experts and the router's gradient stay local (the gate weights are replicated) and run while
// the exchanges are in flight on the communicator's progress thread.
#pragma once

#include <vector>

#include "kernels/backend.h"
#include "kernels/router.h"
#include "parallel/comm.h"
#include "parallel/expert_dispatch.h"
#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/layers/swiglu_mlp.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class MoeBlock : public Block {
 public:
  // Adds layers.{layer}.ffn_norm.weight, layers.{layer}.moe.gate.{weight,bias},
  // layers.{layer}.moe.experts.{w1,w3,w2} (this rank's slice of the experts) and, with shared
  // experts, layers.{layer}.moe.shared.*. ep_comm: the EP group (size ep), null when ep == 1.
  MoeBlock(ParamTable& table, const ModelConfig& config, int layer, int ep = 1, int ep_rank = 0,
           parallel::Comm* ep_comm = nullptr);

  const std::string& name() const override { return name_; }
  void Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) override;
  void BackwardInput(int slot, const float* dy, float* dx) override;
  void BackwardWeight(int slot) override;
  double aux_loss(int slot) const override { return contexts_.at(slot).aux_loss; }

  int layer() const { return layer_; }
  int64_t n_experts() const { return shape_.n_experts; }
  // Tokens routed to each expert by training forwards since the last update_bias() (E).
  // Distributed training sums this over the global batch before update_bias().
  std::vector<int64_t>& load_counts() { return load_counts_; }
  // bias_e += gamma * sign(mean_load - load_e); then clears load_counts. Returns the load's
  // max/mean ratio before the update (1 = perfectly balanced; 0 if nothing was routed).
  double update_bias(double gamma);
  // Experts chosen by the last Forward of `slot`: (N, k), descending biased score.
  const int32_t* routing(int slot) const { return contexts_.at(slot).idx.data<int32_t>(); }

 private:
  struct Context {
    MicroBatchInfo mb;
    const float* x = nullptr;
    const float* dy = nullptr;
    double aux_loss = 0;
    std::vector<int64_t> counts;  // (E) rows per global expert in the permuted order
    // Rows the local experts compute, as (local expert, first row, rows) runs of the expert-side
    // buffers: the permuted rows themselves in one process, the received rows under EP.
    std::vector<parallel::ExpertSegment> segments;
    std::vector<kernels::RowSegment> rows;  // the same runs, as grouped-GEMM segments
    parallel::DispatchPlan plan;  // EP only
    int64_t expert_rows = 0;
    kernels::Tensor rstd, xn, logits, scores, idx, gates, pos_of_slot, slot_of_pos;
    kernels::Tensor xp, yp, dyp, dxp;  // token side: permuted rows (N*k, D)
    kernels::Tensor xe, ye, dye, dxe;  // expert side (EP only; else the token-side buffers)
    kernels::Tensor ab, hp;            // expert side (expert_rows, 2F), (expert_rows, F)
    kernels::Tensor dxn, dgates, dhp, dab, dscores, dlogits;
    // Expert-side views: the EP buffers or the token-side ones.
    float* xe_ptr = nullptr;
    float* ye_ptr = nullptr;
    float* dye_ptr = nullptr;
    float* dxe_ptr = nullptr;
  };
  // Each stage returns the Work of the exchange it posts (empty in one process); the caller
  // overlaps it with local work before waiting.
  parallel::Work RouteAndDispatch(Context& c);      // routes; posts the dispatch of the rows
  parallel::Work ExpertsForward(Context& c);        // runs the experts; posts the combine
  parallel::Work DispatchOutputGrads(Context& c);   // posts the dispatch of the output gradients
  parallel::Work ExpertsBackwardInput(Context& c);  // experts' input grads; posts their combine

  ParamTable& table_;
  std::string name_;
  int layer_;
  int64_t local_experts_;
  parallel::Comm* ep_comm_;
  int64_t dim_, hidden_;
  double eps_, seq_aux_alpha_;
  kernels::RouterShape shape_;
  int norm_, gate_w_, gate_b_, w1_, w3_, w2_;
  std::unique_ptr<SwigluMlp> shared_;  // null without shared experts
  std::vector<Context> contexts_;
  std::vector<int64_t> load_counts_;
};

}  // namespace tessera::trainer
