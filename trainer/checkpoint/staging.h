// Where checkpoints read and write parameter values and AdamW moments. HDF5 reads and writes host
// memory, so on a backend whose memory the host cannot address (a GPU) they go through host
// mirrors (pinned): to_host() before a save copies the device's values and moment shards into the
// mirrors, to_device() after a resume copies them back. On the CPU the "mirrors" are the model's
// own buffers and both calls do nothing.
//
// bf16 optimizer state (optimizer.state_dtype): checkpoints keep the moments as float32 whatever
// the state dtype, so the moments always go through fp32 mirrors: to_host() widens the bf16
// moments (exact), to_device() rounds the mirrors to bf16 (nearest even); moments on a device
// travel as bf16 bits through a host chunk. Widening then rounding gives back the same bits, so
// a bf16 run resumed on its own layout continues bit for bit, and either state dtype resumes a
// checkpoint written with the other. These mirrors are anonymous pages needed only while a
// checkpoint is written or read: to_device() hands them back to the system when done, and
// release() does after a save (else they stay resident until the next save rewrites them, 8 bytes
// per shard element).
//
// Thread-safety: none; the training loop's thread.
#pragma once

#include <cstddef>
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
  ~CheckpointStaging();
  CheckpointStaging(const CheckpointStaging&) = delete;
  CheckpointStaging& operator=(const CheckpointStaging&) = delete;

  const CheckpointBuffers& buffers() const { return buffers_; }
  // false: every buffer is the model's own (a host backend with fp32 optimizer state).
  bool staged() const { return values_staged_ || moments_staged_ || widened_ != nullptr; }
  void to_host();    // device -> mirrors (complete on return)
  void to_device();  // mirrors -> device (complete on return); then release()
  // Hands the bf16 moments' fp32 mirrors back to the system (they read as zeros until the next
  // to_host()); nothing for fp32 state. REQUIRES: no save still reads the buffers (a
  // CheckpointWriter::Save has returned: it snapshots or writes before returning).
  void release();

 private:
  ParamTable& params_;
  ZeroOptimizer& optimizer_;
  bool values_staged_;                     // the backend's memory is not host-addressable
  bool moments_staged_;                    // ... and the moments are fp32
  kernels::Tensor values_;                 // (padded_numel) when values_staged_
  std::vector<kernels::Tensor> moments_;   // per shard: exp_avg, exp_avg_sq when moments_staged_
  float* widened_ = nullptr;               // bf16 state: one mapping of every fp32 mirror
  size_t widened_bytes_ = 0;
  CheckpointBuffers buffers_;
};

}  // namespace tessera::trainer
