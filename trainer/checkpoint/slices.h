// Which elements of the checkpoint's global tensors this rank writes and reads (tensors.h's
// TensorSlice), from its ParamTable (its model part: stage layers, expert slice) and its ZeRO-1
// shards:
//   owned: the rank's ZeRO-1 shard of each parameter region, as slices of the parameter values and
//          of the AdamW moments. Over all ranks they cover every tensor of the checkpoint exactly
//          once, so each rank writes these (and checks their checksums on reading).
//   reads: what the rank must read to resume: every parameter value it holds (all of it: values
//          are replicated over data-parallel ranks) and its moment shards.
// A parameter piece maps to one contiguous range of its global tensor: dense parameters are whole
// tensors, expert slices are consecutive rows of the stacked [n_experts, ...] tensor.
#pragma once

#include <vector>

#include "trainer/checkpoint/tensors.h"
#include "trainer/checkpoint/staging.h"
#include "trainer/param_table.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {

class CheckpointSlices {
 public:
  // REQUIRES: every parameter of `params` is in `tensors` (checkpoint_tensors of the same model).
  // The slices point into the model's own buffers (host memory)...
  CheckpointSlices(const std::vector<CheckpointTensor>& tensors, ParamTable& params,
                   ZeroOptimizer& optimizer);
  // ... or into `buffers` laid out like them (CheckpointStaging's host mirrors of device memory).
  CheckpointSlices(const std::vector<CheckpointTensor>& tensors, ParamTable& params,
                   ZeroOptimizer& optimizer, const CheckpointBuffers& buffers);
  const std::vector<TensorSlice>& owned() const { return owned_; }
  const std::vector<TensorSlice>& reads() const { return reads_; }

 private:
  std::vector<TensorSlice> owned_, reads_;
};

}  // namespace tessera::trainer
