// ZeRO-1 (DESIGN.md "Numbers flow" step 4). The dense parameter region is replicated over the
// data-parallel group and the routed-expert region over the expert-data-parallel group. Each
// region is cut into BUCKETS (about bucket_elements each, a multiple of the group size), and each
// bucket into group-size equal shards: rank r owns shard r of every bucket. Per step:
//   - gradients of a bucket are reduce-scattered (each rank gets the group's sum for its shard)
//     as soon as every parameter in it has its final gradient (MarkFinal, called by the backward
//     as blocks finish their last micro-batch), so the reduction overlaps the rest of the
//     backward; FinishReduction posts what is left and waits;
//   - AdamW updates the rank's shards only: moments exist for them alone (1/dp of the dense and
//     1/expert-dp of the expert optimizer state; fp32 or bf16, optimizer.state_dtype);
//   - the updated shards are all-gathered so every replica again holds every parameter.
// Without data parallelism the shards are whole buckets and nothing is communicated.
//
// Posting order: ranks of a group call MarkFinal for the same parameters in the same order (they
// run the same schedule on the same model part), so buckets are posted in the same order on every
// rank of the group, as Comm requires. Under DualPipe a group spans the mirrored stages k and
// pp-1-k: their lists are each other's with the two chunks swapped, so both finish the same block
// at the same point (tests/parallel/dualpipe_schedules_test.cc checks that symmetry), and their
// parameter tables are identical (Model adds parameters in layer order).
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
                parallel::Comm& expert_dp, int64_t bucket_elements = int64_t{4} << 20);

  // Starts a step's gradient reduction: no parameter's gradient is final yet.
  void BeginStep();
  // Parameters [first, end) (indices into params.descs()) have their final gradients for this
  // step; buckets whose every parameter is final are reduce-scattered now (non-blocking).
  void MarkFinal(int first, int end);
  // Collective: reduce-scatters the buckets not posted yet, waits for all. Returns this rank's
  // share of the squared global gradient norm (trainable parameters of its shards): summed over
  // every rank of the world it gives the squared norm of the whole model's gradient.
  double FinishReduction();
  // AdamW on this rank's shards (gradients scaled by grad_scale), then the collective all-gather
  // of the updated values.
  void Step(double lr, double grad_scale);

  // This rank's shards (one per bucket), and the AdamW moments of shard k: fp32, or bf16 bits
  // under optimizer.state_dtype bf16 (AdamW's accessors and their REQUIREs).
  const std::vector<FlatRange>& shards() const { return adamw_.owned(); }
  StateDtype state_dtype() const { return adamw_.state_dtype(); }
  std::span<float> exp_avg(size_t k) { return adamw_.exp_avg(k); }
  std::span<float> exp_avg_sq(size_t k) { return adamw_.exp_avg_sq(k); }
  std::span<uint16_t> exp_avg_bf16(size_t k) { return adamw_.exp_avg_bf16(k); }
  std::span<uint16_t> exp_avg_sq_bf16(size_t k) { return adamw_.exp_avg_sq_bf16(k); }
  int64_t steps_taken() const { return adamw_.steps_taken(); }
  void set_steps_taken(int64_t steps) { adamw_.set_steps_taken(steps); }
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    FlatRange range;
    parallel::Comm* group;
    std::vector<int> params;  // parameters overlapping it
    int pending = 0;          // of those, not final yet this step
    parallel::Work work;      // its reduce-scatter, once posted
    bool posted = false;
  };
  void Post(Bucket& b);

  ParamTable& params_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<int>> buckets_of_param_;
  std::vector<bool> final_;
  AdamW adamw_;
};

}  // namespace tessera::trainer
