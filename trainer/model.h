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
// A micro-batch in flight on a chunk keeps its state in a ChunkContext owned by the CALLER (the
// pipeline stage holds one per micro-batch the schedule has in flight at its peak): one arena,
// sized before the first step, with every activation the chunk's forward saves, every backward
// workspace, the residual stream at each block boundary and its gradient, and the token ids.
//
// Thread-safety: none. One micro-batch at a time per ChunkContext.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "trainer/activation_arena.h"
#include "trainer/chunk_steps.h"
#include "trainer/layers/block.h"
#include "trainer/layers/embedding_layer.h"
#include "trainer/layers/moe_block.h"
#include "trainer/layers/mtp_module.h"
#include "trainer/layers/output_head.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// How a micro-batch's losses are normalised to the global batch.
struct LossScale {
  double token_scale = 0;     // 1 / (sequences * seq_len of the global batch)
  double sequence_scale = 0;  // 1 / sequences of the global batch
  double mtp_weight = 0;      // lambda / mtp_depth: each MTP depth's mean CE enters with this
};

// lambda / D for a model that has trained `tokens_seen` tokens (mtp_lambda, then
// mtp_lambda_after from mtp_lambda_switch_tokens on); 0 without MTP.
double mtp_loss_weight(const ModelConfig& config, int64_t tokens_seen);

struct MicroBatchLoss {
  double loss = 0;    // scaled: cross-entropy mean part + auxiliary balance losses + MTP part
  double ce_sum = 0;  // unscaled sum of per-token cross-entropy
  double aux = 0;     // scaled auxiliary losses
  int64_t tokens = 0; // tokens whose cross-entropy is in ce_sum
  std::vector<double> mtp_ce_sum;  // per MTP depth: unscaled CE sums over the same tokens

  MicroBatchLoss& operator+=(const MicroBatchLoss& o) {
    loss += o.loss;
    ce_sum += o.ce_sum;
    aux += o.aux;
    tokens += o.tokens;
    if (mtp_ce_sum.size() < o.mtp_ce_sum.size()) mtp_ce_sum.resize(o.mtp_ce_sum.size(), 0.0);
    for (size_t d = 0; d < o.mtp_ce_sum.size(); ++d) mtp_ce_sum[d] += o.mtp_ce_sum[d];
    return *this;
  }
};

// One model chunk: layers [first_layer, end_layer), with the embedding before them and/or the
// final norm + head + loss after them (and the MTP modules, which read the embedding too).
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
  // MTP with the embedding and the head on different ranks: the head's rank holds a tied copy of
  // embed.weight (ParamDesc::tied_copy). On both ranks the backward never reports embed.weight's
  // gradient final: the caller sums it over the pair first (Model::embedding_params()).
  bool embedding_tied = false;
  static ModelPart whole(const ModelConfig& config);
};

// One micro-batch in flight on one model chunk (see above). Made by Model::NewChunkContext.
struct ChunkContext {
  explicit ChunkContext(ActivationArena arena_) : arena(std::move(arena_)) {}
  int chunk = -1;
  int64_t batch = 0, seq_len = 0;  // the micro-batch shape it was sized for
  ActivationArena arena;
  std::vector<std::unique_ptr<BlockContext>> blocks;  // one per block of the chunk
  OutputHead::Context head;                           // the head chunk's
  std::vector<std::unique_ptr<MtpModule::Context>> mtp;  // the head chunk's, one per depth
  float* acts = nullptr;     // (blocks + 1, N, D) residual stream at each block boundary
  float* grads = nullptr;    // (blocks + 1, N, D) its gradient
  int32_t* inputs = nullptr;   // (N) token ids, in the backend's memory
  int32_t* targets = nullptr;  // (N)
  int32_t* mtp_ids = nullptr;      // (D, N) depth k's inputs t_{i+k} (head chunk with MTP)
  int32_t* mtp_targets = nullptr;  // (D, N) depth k's targets t_{i+k+1}
  std::vector<float*> mtp_dh;  // per depth k: (N, D) the gradient it sends to h^{k-1}
  kernels::Tensor host_ids;    // host staging for the ids, when the device is not the host
};

class Model {
 public:
  // The whole model in one process. Parameters, gradients and activations live on `backend`
  // (which must outlive the model), and every op runs there.
  Model(const ModelConfig& config, kernels::Backend& backend);
  // A part of the model. ep_comm: the expert-parallel group (size part.ep; may be null when
  // part.ep == 1) carrying expert rows in the backend's memory; ep_host_comm: the same ranks for
  // host-side counts (null: ep_comm). The parameter regions are padded to the given multiples
  // (ZeRO-1 group sizes).
  Model(const ModelConfig& config, kernels::Backend& backend, const ModelPart& part,
        parallel::Comm* ep_comm, int64_t dense_multiple = 1, int64_t expert_multiple = 1,
        parallel::Comm* ep_host_comm = nullptr);

  // The whole model's parameter descriptors (global shapes, DESIGN.md order), without
  // allocating anything.
  static std::vector<ParamDesc> WholeModelParams(const ModelConfig& config);
  // A part described, not built: parameter descriptors (unallocated) and the blocks, enough to
  // plan memory (ChunkArenaBytes) without a device. Its compute methods throw.
  static std::unique_ptr<Model> Describe(const ModelConfig& config, const ModelPart& part);

  const ModelConfig& config() const { return config_; }
  const ModelPart& part() const { return part_; }
  // The part's parameters in layer order (DESIGN.md order restricted to the part, whatever the
  // order of its chunks), so two parts holding the same layers have the same table.
  ParamTable& params() { return params_; }
  const ParamTable& params() const { return params_; }
  kernels::Backend& backend();
  const std::vector<MoeBlock*>& moe_blocks() const { return moe_blocks_; }  // in layer order
  // Where embed.weight (or its tied copy) sits in params().descs(); empty if this rank has none.
  std::pair<int, int> embedding_params() const {
    return {embedding_params_.first, embedding_params_.end};
  }
  int n_chunks() const { return static_cast<int>(chunks_.size()); }
  // The blocks of `chunk` in layer order (each layer's attention block, then its FFN block), and
  // of its MTP modules' (after the layers, depth by depth): what the planner walks to price each
  // piece (cluster/plan.h). Valid on a described model.
  std::vector<const Block*> chunk_blocks(int chunk) const;

  // Bytes of one ChunkContext's arena for micro-batches of (batch, seq_len) on `device`, and of
  // the workspace its blocks' transient buffers need (ActivationArena::take_transient): one
  // workspace per model, shared by every context, sized for the largest. One carving measures
  // both.
  struct ChunkBytes {
    int64_t arena = 0, workspace = 0;
  };
  ChunkBytes MeasureChunk(int chunk, int64_t batch, int64_t seq_len,
                          kernels::Device device) const;
  int64_t ChunkArenaBytes(int chunk, int64_t batch, int64_t seq_len, kernels::Device device) const {
    return MeasureChunk(chunk, batch, seq_len, device).arena;
  }
  // A context for micro-batches of (batch, seq_len) on `chunk`, its arena allocated now (and the
  // shared workspace grown if it needs more). Make contexts between steps: a grown workspace
  // moves, and a micro-batch in flight keeps pointers into it until its backward.
  std::unique_ptr<ChunkContext> NewChunkContext(int chunk, int64_t batch, int64_t seq_len);

  // Chunk-level steps on a context made for this chunk and shape. tokens: the micro-batch's
  // (batch, config().row_tokens(seq_len)) ids on the HOST (the embedding chunk reads inputs
  // [:, :seq_len], the head chunk targets [:, 1:seq_len + 1] and MTP depth k [:, k:seq_len + k]
  // and [:, k + 1:seq_len + k + 1]); they are copied. MTP runs in training forwards only.
  // in: the chunk's input (N, D), nullptr for the embedding chunk; out: its output (N, D), nullptr for the head chunk; both in the backend's
  // memory. in, out, dout and din are copied: they need not outlive the call. Returns the chunk's
  // losses (its MoE balance losses; cross-entropy if it holds the head). Weight gradients
  // ACCUMULATE into params().grads().
  // `observer` (optional) hears of every step (chunk_steps.h), for traces.
  MicroBatchLoss ChunkForward(ChunkContext& ctx, const int32_t* tokens, const LossScale& scale,
                              bool training, const float* in, float* out,
                              const StepObserver& observer = {});
  // dout: gradient of the chunk's output, nullptr for the head chunk; din: the gradient of its
  // input, nullptr for the embedding chunk.
  void ChunkBackwardInput(ChunkContext& ctx, const float* dout, float* din,
                          const StepObserver& observer = {});
  // Called with a range [first, end) of params().descs() whose weight-gradient step just ran.
  using ParamsDone = std::function<void(int first, int end)>;
  // Weight gradients of the chunk (head first, then blocks from the last, the embedding last);
  // `done`, if set, hears of each layer's parameters as soon as their step ran.
  void ChunkBackwardWeight(ChunkContext& ctx, const ParamsDone& done = {},
                           const StepObserver& observer = {});
  // The overlapped FB pair (chunk_steps.h's run_overlapped): the training forward of context
  // `f` (as ChunkForward) interleaved with the full backward of context `b` (each block's
  // weight step right after its input-gradient step; `done` as for ChunkBackwardWeight). The
  // two contexts may belong to different chunks and must differ. Equals ChunkForward, then
  // ChunkBackwardInput and ChunkBackwardWeight, bit for bit. Returns the forward's losses.
  MicroBatchLoss ChunkForwardBackward(ChunkContext& f, const int32_t* tokens,
                                      const LossScale& scale, const float* in, float* out,
                                      ChunkContext& b, const float* dout, float* din,
                                      const ParamsDone& done = {},
                                      const StepObserver& observer = {});

  // The whole model in one chunk (REQUIRES a single chunk with embedding and head), on a context
  // the model keeps for these two (remade when the shape changes): forward, then backward.
  MicroBatchLoss TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                 const LossScale& scale);
  // Forward only (no load statistics, no gradients).
  MicroBatchLoss EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                const LossScale& scale);
  // Experts chosen for each token by the last TrainMicroBatch/EvalMicroBatch in MoE layer
  // moe_blocks()[i]: (N, top_k) in the backend's memory.
  const int32_t* routing(int i) const;

 private:
  struct Described {};
  Model(const ModelConfig& config, const ModelPart& part, Described);
  // Parameters [first, end) of params().descs() that one layer added.
  struct ParamRange {
    int first = 0, end = 0;
  };
  struct Chunk {
    ModelChunkSpec spec;
    std::unique_ptr<EmbeddingLayer> embedding;  // null unless spec.embedding
    std::vector<std::unique_ptr<Block>> blocks;
    std::unique_ptr<OutputHead> head;           // null unless spec.head
    std::vector<std::unique_ptr<MtpModule>> mtp;  // spec.head and model.mtp_depth > 0
    ParamRange embedding_params, head_params;
    std::vector<ParamRange> block_params;       // per block
    std::vector<ParamRange> mtp_params;         // per MTP module
  };
  // Builds chunks_ (one per part_.chunks entry, same index), adding parameters in layer order.
  void AddChunks(parallel::Comm* ep_comm, parallel::Comm* ep_host_comm);
  Chunk MakeChunk(const ModelChunkSpec& spec, parallel::Comm* ep_comm,
                  parallel::Comm* ep_host_comm);
  // Carves the chunk's buffers for a micro-batch of (batch, seq_len) into ctx from arena (the
  // same order measuring and for real).
  void CarveChunk(const Chunk& c, ChunkContext& ctx, ActivationArena& arena, int64_t batch,
                  int64_t seq_len, bool training, double sequence_scale) const;
  ChunkContext& WholeModelContext(int64_t batch, int64_t seq_len);
  // Splits the host token rows into the chunk's device id buffers (inputs, targets, MTP ids).
  void StageIds(const Chunk& c, ChunkContext& ctx, const int32_t* tokens);
  // The chunk phases as steps (chunk_steps.h). Steps read the context's buffers when they run
  // (the first forward step carves them). `loss` must outlive the forward steps.
  ChunkSteps ForwardSteps(ChunkContext& ctx, const int32_t* tokens, const LossScale& scale,
                          bool training, const float* in, float* out, MicroBatchLoss& loss);
  // Input-gradient steps, each block's weight steps right after its own when with_weights.
  void AppendBackwardSteps(ChunkContext& ctx, const float* dout, float* din, bool with_weights,
                           const ParamsDone& done, ChunkSteps& steps);
  void AppendHeadWeightSteps(const Chunk& c, ChunkContext& ctx, const ParamsDone& done,
                             ChunkSteps& steps);
  void AppendBlockWeightSteps(const Chunk& c, ChunkContext& ctx, int block, const ParamsDone& done,
                              ChunkSteps& steps);
  void AppendEmbeddingWeightSteps(const Chunk& c, ChunkContext& ctx, const ParamsDone& done,
                                  ChunkSteps& steps);
  void AppendMtpForwardSteps(const Chunk& c, ChunkContext& ctx, const LossScale& scale,
                             MicroBatchLoss& loss, ChunkSteps& steps);
  // The MTP modules' input-gradient steps (last depth first), each module's weight steps right
  // after its own when with_weights.
  void AppendMtpBackwardSteps(const Chunk& c, ChunkContext& ctx, bool with_weights,
                              const ParamsDone& done, ChunkSteps& steps);
  void AppendMtpWeightSteps(const Chunk& c, ChunkContext& ctx, int d, const ParamsDone& done,
                            ChunkSteps& steps);
  // embed.weight's gradient is final once every chunk adding to it reported (the embedding
  // chunk and, with MTP on another chunk of this rank, the head chunk).
  void ReportEmbeddingDone(const ParamsDone& done);

  ModelConfig config_;
  kernels::Backend* backend_ = nullptr;  // null for a described model
  ModelPart part_;
  ParamTable params_;
  std::vector<Chunk> chunks_;
  std::vector<MoeBlock*> moe_blocks_;
  ParamRange embedding_params_;  // where this rank holds the embedding
  int embedding_writers_ = 0;    // chunks adding to its gradient
  int embedding_reports_ = 0;    // of them, reported final this step
  // Every context's transient buffers; measuring (empty) until the first context is made.
  ActivationArena workspace_{kernels::Device::kCPU};
  std::unique_ptr<ChunkContext> whole_;  // TrainMicroBatch / EvalMicroBatch
};

}  // namespace tessera::trainer
