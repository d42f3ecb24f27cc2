// ZeRO-1 (DESIGN.md "Numbers flow" step 4). The dense parameter region is replicated over the
// data-parallel group and the routed-expert region over the expert-data-parallel group; for each,
// gradients are reduce-scattered so every rank holds the group's sum for its shard, the rank's
// AdamW updates that shard only (moments exist for it alone: 1/dp of the dense and 1/expert-dp of
// the expert optimizer state), and the updated shards are all-gathered so every replica again
// holds every parameter. Without data parallelism the shards are the whole regions.
#pragma once

#include <span>
#include <vector>

#include "parallel/comm.h"
#include "trainer/optimizer.h"
#include "trainer/param_table.h"

namespace tessera::trainer {

class ZeroOptimizer {
 public:
  // REQUIRES: params' dense region is padded to a multiple of dp.size() and its expert region to a
  // multiple of expert_dp.size() (Model's region multiples); the comms outlive this object.
  ZeroOptimizer(const OptimizerConfig& config, ParamTable& params, parallel::Comm& dp,
                parallel::Comm& expert_dp);

  // Collective: reduce-scatters the gradients. Returns this rank's share of the squared global
  // gradient norm (trainable parameters of its shards): summed over every rank of the world it
  // gives the squared norm of the whole model's gradient.
  double ReduceGradients();
  // AdamW on this rank's shards (gradients scaled by grad_scale), then the collective all-gather
  // of the updated values.
  void Step(double lr, double grad_scale);

  // This rank's shard of each region (dense, expert), and the AdamW moments of shard k.
  const std::vector<FlatRange>& shards() const { return adamw_.owned(); }
  std::span<float> exp_avg(size_t k) { return adamw_.exp_avg(k); }
  std::span<float> exp_avg_sq(size_t k) { return adamw_.exp_avg_sq(k); }
  int64_t steps_taken() const { return adamw_.steps_taken(); }
  void set_steps_taken(int64_t steps) { adamw_.set_steps_taken(steps); }

 private:
  std::span<float> grad_region(int r);
  ParamTable& params_;
  parallel::Comm* groups_[kParamRegions];  // by region: dp, expert-dp
  AdamW adamw_;
};

}  // namespace tessera::trainer
