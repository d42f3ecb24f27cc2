// Where checkpoints read and write parameter values and AdamW moments. HDF5 reads and writes host
// memory, so on a backend whose memory the host cannot address (a GPU) they go through host
// mirrors (pinned): to_host() before a save copies the device's values and moment shards into the
// mirrors, to_device() after a resume copies them back. On the CPU the "mirrors" are the model's
// own buffers and both calls do nothing.
//
// Thread-safety: none; the training loop's thread.
#pragma once

#include <vector>

#include "kernels/tensor.h"
#include "trainer/param_table.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {

// Host-addressable copies (or the buffers themselves): the flat parameter values and, per ZeRO-1
// shard k, its two moments (optimizer.shards()[k].size() elements each).
struct CheckpointBuffers {
  float* values = nullptr;
  std::vector<float*> exp_avg, exp_avg_sq;
};

// The model's own buffers (host-addressable only on a host-accessible backend).
CheckpointBuffers model_buffers(ParamTable& params, ZeroOptimizer& optimizer);

class CheckpointStaging {
 public:
  // REQUIRES: params and optimizer outlive this object.
  CheckpointStaging(ParamTable& params, ZeroOptimizer& optimizer);

  const CheckpointBuffers& buffers() const { return buffers_; }
  bool staged() const { return staged_; }  // false: the buffers are the model's own
  void to_host();    // device -> mirrors (complete on return)
  void to_device();  // mirrors -> device (complete on return)

 private:
  ParamTable& params_;
  ZeroOptimizer& optimizer_;
  bool staged_;
  kernels::Tensor values_;                 // (padded_numel) when staged
  std::vector<kernels::Tensor> moments_;   // per shard: exp_avg, exp_avg_sq when staged
  CheckpointBuffers buffers_;
};

}  // namespace tessera::trainer
