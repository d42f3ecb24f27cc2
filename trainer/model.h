// Model: the DESIGN.md transformer as a sequence of blocks between an embedding and an output
// head, over one ParamTable. Each transformer layer i is two blocks: attention, then a dense
// FFN (i < first_dense_layers) or an MoE. No autograd: the model calls each block's Forward,
// BackwardInput and BackwardWeight explicitly.
//
// Under a parallel layout a rank holds a PART of the model (ModelPart): one or more model chunks
// (pipeline virtual stages), each a range of layers, the first chunk of the pipeline also holding
// the embedding and the last one the final norm, head and loss; and, with expert parallelism, a
// slice of every MoE layer's routed experts. The pipeline executor drives the chunk-level calls.
//
// Thread-safety: none. One micro-batch at a time per (chunk, slot).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/comm.h"
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
  int64_t tokens = 0; // tokens whose cross-entropy is in ce_sum

  MicroBatchLoss& operator+=(const MicroBatchLoss& o) {
    loss += o.loss;
    ce_sum += o.ce_sum;
    aux += o.aux;
    tokens += o.tokens;
    return *this;
  }
};

// One model chunk: layers [first_layer, end_layer), with the embedding before them and/or the
// final norm + head + loss after them.
struct ModelChunkSpec {
  int first_layer = 0;
  int end_layer = 0;
  bool embedding = false;
  bool head = false;
};

struct ModelPart {
  std::vector<ModelChunkSpec> chunks;  // in pipeline order
  int ep = 1;       // expert-parallel degree: this rank holds n_experts / ep routed experts
  int ep_rank = 0;  // ... namely [ep_rank * n_experts / ep, (ep_rank + 1) * n_experts / ep)
  static ModelPart whole(const ModelConfig& config);
};

class Model {
 public:
  // The whole model in one process. Parameters, gradients and activations live on `backend`
  // (which must outlive the model), and every op runs there.
  Model(const ModelConfig& config, kernels::Backend& backend);
  // A part of the model. ep_comm: the expert-parallel group (size part.ep; may be null when
  // part.ep == 1). The parameter regions are padded to the given multiples (ZeRO-1 group sizes).
  Model(const ModelConfig& config, kernels::Backend& backend, const ModelPart& part,
        parallel::Comm* ep_comm, int64_t dense_multiple = 1, int64_t expert_multiple = 1);

  // The whole model's parameter descriptors (global shapes, DESIGN.md order), without
  // allocating anything.
  static std::vector<ParamDesc> WholeModelParams(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const ModelPart& part() const { return part_; }
  ParamTable& params() { return params_; }
  kernels::Backend& backend() { return backend_; }
  const std::vector<MoeBlock*>& moe_blocks() const { return moe_blocks_; }
  int n_chunks() const { return static_cast<int>(chunks_.size()); }

  // Chunk-level steps. tokens: the micro-batch's (batch, seq_len + 1) ids on the HOST (the embedding chunk
  // reads inputs [:, :-1], the head chunk targets [:, 1:]); they must stay valid until the
  // chunk's backward weight step. in: the chunk's input (N, D), nullptr for the embedding chunk;
  // out: its output (N, D), nullptr for the head chunk; both in the backend's memory. in, out,
  // dout and din are copied: they need not outlive the call. Returns the chunk's losses (its MoE balance losses; cross-entropy
  // if it holds the head). Weight gradients ACCUMULATE into params().grads().
  MicroBatchLoss ChunkForward(int chunk, int slot, const int32_t* tokens, int64_t batch,
                              int64_t seq_len, const LossScale& scale, bool training,
                              const float* in, float* out);
  // dout: gradient of the chunk's output, nullptr for the head chunk; din: the gradient of its
  // input, nullptr for the embedding chunk.
  void ChunkBackwardInput(int chunk, int slot, const float* dout, float* din);
  // Called with a range [first, end) of params().descs() whose weight-gradient step just ran.
  using ParamsDone = std::function<void(int first, int end)>;
  // Weight gradients of the chunk (head first, then blocks from the last, the embedding last);
  // `done`, if set, hears of each layer's parameters as soon as their step ran.
  void ChunkBackwardWeight(int chunk, int slot, const ParamsDone& done = {});

  // The whole model in one chunk (REQUIRES a single chunk with embedding and head): forward,
  // then backward, on slot 0.
  MicroBatchLoss TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                 const LossScale& scale);
  // Forward only (no load statistics, no gradients).
  MicroBatchLoss EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                const LossScale& scale);

 private:
  struct Slot {
    int64_t N = 0;
    kernels::Tensor inputs, targets;  // (N) ids, in the backend's memory
    kernels::Tensor host_ids;         // (2N) host staging for them, when that is elsewhere
    kernels::Tensor acts;             // (blocks + 1, N, D) residual stream at each boundary
    kernels::Tensor grads;            // (blocks + 1, N, D) its gradient
  };
  // Parameters [first, end) of params().descs() that one layer added.
  struct ParamRange {
    int first = 0, end = 0;
  };
  struct Chunk {
    ModelChunkSpec spec;
    std::unique_ptr<EmbeddingLayer> embedding;  // null unless spec.embedding
    std::vector<std::unique_ptr<Block>> blocks;
    std::unique_ptr<OutputHead> head;           // null unless spec.head
    ParamRange embedding_params, head_params;
    std::vector<ParamRange> block_params;       // per block
    std::vector<Slot> slots;
  };
  void AddChunk(const ModelChunkSpec& spec, parallel::Comm* ep_comm);

  ModelConfig config_;
  kernels::Backend& backend_;
  ModelPart part_;
  ParamTable params_;
  std::vector<Chunk> chunks_;
  std::vector<MoeBlock*> moe_blocks_;
};

}  // namespace tessera::trainer
