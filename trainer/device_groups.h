// The communicators that carry tensors in the backend's memory: the layout's MPI groups
// themselves when the host can address that memory (CPU), else NCCL communicators over the same
// ranks on the backend's device (parallel/device_comm). Host-side data (the step's scalars, MoE
// loads and per-expert counts) stays on the MPI groups.
#pragma once

#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "parallel/comm.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

class DeviceGroups {
 public:
  // Collective over the world (every rank makes the same groups in the same order).
  DeviceGroups(ParallelLayout& layout, parallel::Comm& eval_pipeline, kernels::Backend& backend);

  parallel::Comm& pp() const { return *pp_; }
  parallel::Comm& dp() const { return *dp_; }
  parallel::Comm* ep() const { return ep_; }
  parallel::Comm& expert_dp() const { return *expert_dp_; }
  parallel::Comm& eval_pipeline() const { return *eval_pipeline_; }
  parallel::Comm* embedding_tie() const { return embedding_tie_; }  // null unless tied here
  // The communicators made here (none on the CPU), for communication statistics.
  std::vector<parallel::Comm*> owned() const;

 private:
  parallel::Comm* pp_;
  parallel::Comm* dp_;
  parallel::Comm* ep_;
  parallel::Comm* expert_dp_;
  parallel::Comm* eval_pipeline_;
  parallel::Comm* embedding_tie_ = nullptr;
  std::vector<std::unique_ptr<parallel::Comm>> owned_;
};

}  // namespace tessera::trainer
