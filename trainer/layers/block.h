// Block: one residual sub-layer of the transformer (attention, dense FFN or MoE), with the
// forward and the backward split in two, as zero-bubble pipelines and DualPipe need:
//   Forward(slot, x) -> y               y = x + f(norm(x))
//   BackwardInput(slot, dy) -> dx       on the critical path (B)
//   BackwardWeight(slot)                weight gradients, may be deferred (W)
// A "slot" is a micro-batch in flight; the block keeps one context of saved activations per
// slot, reused across steps (buffers are allocated once and grow only when shapes grow).
//
// Buffer contract: x passed to Forward and dy passed to BackwardInput must stay valid and
// unchanged until BackwardWeight(slot) returns (the model keeps one residual buffer per block
// boundary per slot). Weight gradients accumulate (+=); dx is written.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::trainer {

struct MicroBatchInfo {
  int64_t batch = 0;            // sequences in this micro-batch
  int64_t seq_len = 0;          // tokens per sequence
  bool training = true;         // false: no load statistics, no context needed for backward
  double sequence_scale = 0.0;  // 1 / sequences of the global batch (auxiliary losses are means)
  int64_t tokens() const { return batch * seq_len; }
};

class Block {
 public:
  virtual ~Block() = default;
  virtual const std::string& name() const = 0;
  virtual void Forward(int slot, const MicroBatchInfo& mb, const float* x, float* y) = 0;
  virtual void BackwardInput(int slot, const float* dy, float* dx) = 0;
  virtual void BackwardWeight(int slot) = 0;
  // Auxiliary loss added by the last Forward of this slot (already scaled); 0 for most blocks.
  virtual double aux_loss(int /*slot*/) const { return 0.0; }
};

}  // namespace tessera::trainer
