// Model: the DESIGN.md transformer as a sequence of blocks between an embedding and an output
// head, over one ParamTable. Each transformer layer i is two blocks: attention, then a dense
// FFN (i < first_dense_layers) or an MoE. No autograd: the model calls each block's Forward,
// BackwardInput and BackwardWeight explicitly.
//
// Thread-safety: none. One micro-batch at a time per slot.
#pragma once

#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/layers/embedding_layer.h"
#include "trainer/layers/moe_block.h"
#include "trainer/layers/output_head.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// How a micro-batch's losses are normalised to the global batch.
struct LossScale {
  double token_scale = 0;     // 1 / (sequences * seq_len of the global batch)
  double sequence_scale = 0;  // 1 / sequences of the global batch
};

struct MicroBatchLoss {
  double loss = 0;    // scaled: cross-entropy mean part + auxiliary balance losses
  double ce_sum = 0;  // unscaled sum of per-token cross-entropy
  double aux = 0;     // scaled auxiliary losses
  int64_t tokens = 0;

  MicroBatchLoss& operator+=(const MicroBatchLoss& o) {
    loss += o.loss;
    ce_sum += o.ce_sum;
    aux += o.aux;
    tokens += o.tokens;
    return *this;
  }
};

class Model {
 public:
  explicit Model(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  ParamTable& params() { return params_; }
  const std::vector<MoeBlock*>& moe_blocks() const { return moe_blocks_; }

  // tokens: (batch, seq_len + 1) ids; inputs are [:, :-1], targets [:, 1:].
  // Training: forward, then backward; weight gradients ACCUMULATE into params().grads().
  MicroBatchLoss TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                 const LossScale& scale);
  // Forward only (no load statistics, no gradients).
  MicroBatchLoss EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                const LossScale& scale);

 private:
  MicroBatchLoss Forward(int slot, const int32_t* tokens, int64_t batch, int64_t seq_len,
                         const LossScale& scale, bool training);
  void Backward(int slot);

  ModelConfig config_;
  ParamTable params_;
  std::unique_ptr<EmbeddingLayer> embedding_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::vector<MoeBlock*> moe_blocks_;
  std::unique_ptr<OutputHead> head_;

  struct Slot {
    int64_t N = 0;
    kernels::Tensor inputs, targets;  // (N) ids
    kernels::Tensor acts;             // (blocks + 1, N, D) residual stream at each boundary
    kernels::Tensor grads;            // (blocks + 1, N, D) its gradient
  };
  std::vector<Slot> slots_;
};

}  // namespace tessera::trainer
