#include "trainer/model.h"

#include <stdexcept>

#include "trainer/layers/attention_block.h"
#include "trainer/layers/dense_ffn_block.h"

namespace tessera::trainer {

ModelPart ModelPart::whole(const ModelConfig& config) {
  ModelPart part;
  part.chunks.push_back({0, static_cast<int>(config.n_layers), /*embedding=*/true, /*head=*/true});
  return part;
}

Model::Model(const ModelConfig& config, kernels::Backend& backend)
    : Model(config, backend, ModelPart::whole(config), nullptr) {}

std::vector<ParamDesc> Model::WholeModelParams(const ModelConfig& config) {
  ParamTable table;  // descriptors only: never finalized, so nothing is allocated
  EmbeddingLayer embedding(table, config);
  std::vector<std::unique_ptr<Block>> blocks;
  for (int i = 0; i < config.n_layers; ++i) {
    blocks.push_back(std::make_unique<AttentionBlock>(table, config, i));
    if (i < config.first_dense_layers) {
      blocks.push_back(std::make_unique<DenseFfnBlock>(table, config, i));
    } else {
      blocks.push_back(std::make_unique<MoeBlock>(table, config, i));
    }
  }
  OutputHead head(table, config);
  return table.descs();
}

Model::Model(const ModelConfig& config, kernels::Backend& backend, const ModelPart& part,
             parallel::Comm* ep_comm, int64_t dense_multiple, int64_t expert_multiple,
             parallel::Comm* ep_host_comm)
    : config_(config), backend_(&backend), part_(part) {
  if (part.chunks.empty()) throw std::logic_error("Model: a model part needs at least one chunk");
  if (part.ep > 1 && (ep_comm == nullptr || ep_comm->size() != part.ep)) {
    throw std::logic_error("Model: expert parallelism needs an EP communicator of size ep");
  }
  // Parameters are added in DESIGN.md order within each chunk, chunks in pipeline order.
  for (const ModelChunkSpec& spec : part.chunks) {
    AddChunk(spec, part.ep > 1 ? ep_comm : nullptr, part.ep > 1 ? ep_host_comm : nullptr);
  }
  params_.finalize(backend, dense_multiple, expert_multiple);
}

Model::Model(const ModelConfig& config, const ModelPart& part, Described)
    : config_(config), part_(part) {
  if (part.chunks.empty()) throw std::logic_error("Model: a model part needs at least one chunk");
  for (const ModelChunkSpec& spec : part.chunks) AddChunk(spec, nullptr, nullptr);
}

std::unique_ptr<Model> Model::Describe(const ModelConfig& config, const ModelPart& part) {
  return std::unique_ptr<Model>(new Model(config, part, Described{}));
}

kernels::Backend& Model::backend() {
  if (!backend_) throw std::logic_error("Model: a described model has no backend");
  return *backend_;
}

void Model::AddChunk(const ModelChunkSpec& spec, parallel::Comm* ep_comm,
                     parallel::Comm* ep_host_comm) {
  Chunk c;
  c.spec = spec;
  auto added = [&](auto&& add) {  // the parameter range one layer's constructor adds
    const int first = static_cast<int>(params_.descs().size());
    add();
    return ParamRange{first, static_cast<int>(params_.descs().size())};
  };
  if (spec.embedding) {
    c.embedding_params =
        added([&] { c.embedding = std::make_unique<EmbeddingLayer>(params_, config_); });
  }
  for (int i = spec.first_layer; i < spec.end_layer; ++i) {
    c.block_params.push_back(added(
        [&] { c.blocks.push_back(std::make_unique<AttentionBlock>(params_, config_, i)); }));
    c.block_params.push_back(added([&] {
      if (i < config_.first_dense_layers) {
        c.blocks.push_back(std::make_unique<DenseFfnBlock>(params_, config_, i));
      } else {
        auto moe = std::make_unique<MoeBlock>(params_, config_, i, part_.ep, part_.ep_rank, ep_comm,
                                              ep_host_comm);
        moe_blocks_.push_back(moe.get());
        c.blocks.push_back(std::move(moe));
      }
    }));
  }
  if (spec.head) {
    c.head_params = added([&] { c.head = std::make_unique<OutputHead>(params_, config_); });
  }
  chunks_.push_back(std::move(c));
}

void Model::CarveChunk(const Chunk& c, ChunkContext& ctx, ActivationArena& arena, int64_t batch,
                       int64_t seq_len, bool training, double sequence_scale) const {
  const int64_t N = batch * seq_len, D = config_.dim;
  const int64_t boundaries = static_cast<int64_t>(c.blocks.size()) + 1;
  ctx.batch = batch;
  ctx.seq_len = seq_len;
  ctx.acts = arena.take<float>(boundaries * N * D);
  ctx.grads = arena.take<float>(boundaries * N * D);
  if (c.embedding || c.head) {
    ctx.inputs = arena.take<int32_t>(N);
    ctx.targets = arena.take<int32_t>(N);
  }
  if (c.head) c.head->Carve(ctx.head, arena, N);
  const MicroBatchInfo mb{batch, seq_len, training, sequence_scale};
  for (size_t i = 0; i < c.blocks.size(); ++i) c.blocks[i]->Prepare(*ctx.blocks[i], arena, mb);
}

int64_t Model::ChunkArenaBytes(int chunk, int64_t batch, int64_t seq_len,
                               kernels::Device device) const {
  const Chunk& c = chunks_.at(chunk);
  ActivationArena measure(device);
  ChunkContext ctx(ActivationArena{device});
  for (const auto& block : c.blocks) ctx.blocks.push_back(block->NewContext());
  CarveChunk(c, ctx, measure, batch, seq_len, /*training=*/true, 0.0);
  return static_cast<int64_t>(measure.used());
}

std::unique_ptr<ChunkContext> Model::NewChunkContext(int chunk, int64_t batch, int64_t seq_len) {
  kernels::Backend& be = backend();
  const Chunk& c = chunks_.at(chunk);
  const int64_t bytes = ChunkArenaBytes(chunk, batch, seq_len, be.device());
  auto ctx = std::make_unique<ChunkContext>(ActivationArena(be, static_cast<size_t>(bytes)));
  ctx->chunk = chunk;
  ctx->batch = batch;
  ctx->seq_len = seq_len;
  for (const auto& block : c.blocks) ctx->blocks.push_back(block->NewContext());
  return ctx;
}

MicroBatchLoss Model::ChunkForward(ChunkContext& ctx, const int32_t* tokens,
                                   const LossScale& scale, bool training, const float* in,
                                   float* out) {
  kernels::Backend& be = backend();
  const Chunk& c = chunks_.at(ctx.chunk);
  const int64_t batch = ctx.batch, seq_len = ctx.seq_len;
  const int64_t N = batch * seq_len, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  kernels::BackendOps<float>& ops = be.ops<float>();
  // The arena is sized for exactly this carving: a new micro-batch starts from its beginning.
  ctx.arena.reset();
  CarveChunk(c, ctx, ctx.arena, batch, seq_len, training, scale.sequence_scale);
  float* acts = ctx.acts;
  if (c.embedding || c.head) {
    // Inputs and targets are split on the host, then moved to the device if it is not the host.
    const bool host = be.capabilities().host_accessible;
    if (!host && (!ctx.host_ids.defined() || ctx.host_ids.numel() < 2 * N)) {
      ctx.host_ids = be.alloc_host({2 * N}, kernels::DType::kI32);
    }
    int32_t* in_ids = host ? ctx.inputs : ctx.host_ids.data<int32_t>();
    int32_t* tgt_ids = host ? ctx.targets : ctx.host_ids.data<int32_t>() + N;
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t* row = tokens + b * (seq_len + 1);
      for (int64_t t = 0; t < seq_len; ++t) {
        in_ids[b * seq_len + t] = row[t];
        tgt_ids[b * seq_len + t] = row[t + 1];
      }
    }
    if (!host) {
      be.copy_from_host(ctx.inputs, in_ids, sizeof(int32_t) * N);
      be.copy_from_host(ctx.targets, tgt_ids, sizeof(int32_t) * N);
    }
  }
  if (c.embedding) {
    c.embedding->Forward(ctx.inputs, acts, N);
  } else {
    ops.copy(acts, in, N * D);
  }

  MicroBatchLoss loss;
  for (int64_t i = 0; i < n_blocks; ++i) {
    c.blocks[i]->Forward(*ctx.blocks[i], acts + i * N * D, acts + (i + 1) * N * D);
    loss.aux += ctx.blocks[i]->aux_loss;
  }
  double ce = 0;
  if (c.head) {
    ce = c.head->Forward(ctx.head, acts + n_blocks * N * D, ctx.targets, scale.token_scale);
    loss.ce_sum = ctx.head.ce_sum;
    loss.tokens = N;
  } else {
    ops.copy(out, acts + n_blocks * N * D, N * D);
  }
  loss.loss = ce + loss.aux;
  return loss;
}

void Model::ChunkBackwardInput(ChunkContext& ctx, const float* dout, float* din) {
  const Chunk& c = chunks_.at(ctx.chunk);
  const int64_t N = ctx.batch * ctx.seq_len, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  kernels::BackendOps<float>& ops = backend().ops<float>();
  float* grads = ctx.grads;
  if (c.head) {
    c.head->BackwardInput(ctx.head, grads + n_blocks * N * D);
  } else {
    ops.copy(grads + n_blocks * N * D, dout, N * D);
  }
  for (int64_t i = n_blocks - 1; i >= 0; --i) {
    c.blocks[i]->BackwardInput(*ctx.blocks[i], grads + (i + 1) * N * D, grads + i * N * D);
  }
  if (!c.embedding) ops.copy(din, grads, N * D);
}

void Model::ChunkBackwardWeight(ChunkContext& ctx, const ParamsDone& done) {
  const Chunk& c = chunks_.at(ctx.chunk);
  auto report = [&](ParamRange r) {
    if (done && r.first < r.end) done(r.first, r.end);
  };
  if (c.head) {
    c.head->BackwardWeight(ctx.head);
    report(c.head_params);
  }
  for (int i = static_cast<int>(c.blocks.size()) - 1; i >= 0; --i) {
    c.blocks[i]->BackwardWeight(*ctx.blocks[i]);
    report(c.block_params[i]);
  }
  if (c.embedding) {
    c.embedding->BackwardWeight(ctx.inputs, ctx.grads, ctx.batch * ctx.seq_len);
    report(c.embedding_params);
  }
}

namespace {
void require_whole(const std::vector<ModelChunkSpec>& chunks, const char* what) {
  if (chunks.size() != 1 || !chunks[0].embedding || !chunks[0].head) {
    throw std::logic_error(std::string("Model::") + what + " needs the whole model in one chunk");
  }
}
}  // namespace

ChunkContext& Model::WholeModelContext(int64_t batch, int64_t seq_len) {
  if (!whole_ || whole_->batch != batch || whole_->seq_len != seq_len) {
    whole_ = NewChunkContext(0, batch, seq_len);
  }
  return *whole_;
}

MicroBatchLoss Model::TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                      const LossScale& scale) {
  require_whole(part_.chunks, "TrainMicroBatch");
  ChunkContext& ctx = WholeModelContext(batch, seq_len);
  MicroBatchLoss loss = ChunkForward(ctx, tokens, scale, true, nullptr, nullptr);
  ChunkBackwardInput(ctx, nullptr, nullptr);
  ChunkBackwardWeight(ctx);
  return loss;
}

MicroBatchLoss Model::EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                     const LossScale& scale) {
  require_whole(part_.chunks, "EvalMicroBatch");
  return ChunkForward(WholeModelContext(batch, seq_len), tokens, scale, false, nullptr, nullptr);
}

const int32_t* Model::routing(int i) const {
  if (!whole_) throw std::logic_error("Model::routing before any whole-model micro-batch");
  const MoeBlock* moe = moe_blocks_.at(i);
  const Chunk& c = chunks_.at(0);
  for (size_t b = 0; b < c.blocks.size(); ++b) {
    if (c.blocks[b].get() == moe) return moe->routing(*whole_->blocks[b]);
  }
  throw std::logic_error("Model::routing: MoE block not in the whole-model chunk");
}

}  // namespace tessera::trainer
