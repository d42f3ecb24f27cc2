#include "trainer/model.h"

#include <stdexcept>

#include "trainer/layers/attention_block.h"
#include "trainer/layers/buffer.h"
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
             parallel::Comm* ep_comm, int64_t dense_multiple, int64_t expert_multiple)
    : config_(config), backend_(backend), part_(part) {
  if (part.chunks.empty()) throw std::logic_error("Model: a model part needs at least one chunk");
  if (part.ep > 1 && (ep_comm == nullptr || ep_comm->size() != part.ep)) {
    throw std::logic_error("Model: expert parallelism needs an EP communicator of size ep");
  }
  // Parameters are added in DESIGN.md order within each chunk, chunks in pipeline order.
  for (const ModelChunkSpec& spec : part.chunks) AddChunk(spec, part.ep > 1 ? ep_comm : nullptr);
  params_.finalize(backend, dense_multiple, expert_multiple);
}

void Model::AddChunk(const ModelChunkSpec& spec, parallel::Comm* ep_comm) {
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
        auto moe = std::make_unique<MoeBlock>(params_, config_, i, part_.ep, part_.ep_rank, ep_comm);
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

MicroBatchLoss Model::ChunkForward(int chunk, int slot, const int32_t* tokens, int64_t batch,
                                   int64_t seq_len, const LossScale& scale, bool training,
                                   const float* in, float* out) {
  Chunk& c = chunks_.at(chunk);
  if (slot >= static_cast<int>(c.slots.size())) c.slots.resize(slot + 1);
  Slot& s = c.slots[slot];
  const int64_t N = batch * seq_len, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  s.N = N;
  kernels::BackendOps<float>& ops = backend_.ops<float>();
  float* acts = ensure_floats(backend_, s.acts, (n_blocks + 1) * N * D);
  if (c.embedding || c.head) {
    // Inputs and targets are split on the host, then moved to the device if it is not the host.
    const bool host = backend_.capabilities().host_accessible;
    int32_t* inputs = ensure_ints(backend_, s.inputs, N);
    int32_t* targets = ensure_ints(backend_, s.targets, N);
    if (!host) {
      if (!s.host_ids.defined() || s.host_ids.numel() < 2 * N) {
        s.host_ids = backend_.alloc_host({2 * N}, kernels::DType::kI32);
      }
    }
    int32_t* in_ids = host ? inputs : s.host_ids.data<int32_t>();
    int32_t* tgt_ids = host ? targets : s.host_ids.data<int32_t>() + N;
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t* row = tokens + b * (seq_len + 1);
      for (int64_t t = 0; t < seq_len; ++t) {
        in_ids[b * seq_len + t] = row[t];
        tgt_ids[b * seq_len + t] = row[t + 1];
      }
    }
    if (!host) {
      backend_.copy_from_host(inputs, in_ids, sizeof(int32_t) * N);
      backend_.copy_from_host(targets, tgt_ids, sizeof(int32_t) * N);
    }
  }
  if (c.embedding) {
    c.embedding->Forward(s.inputs.data<int32_t>(), acts, N);
  } else {
    ops.copy(acts, in, N * D);
  }

  MicroBatchInfo mb{batch, seq_len, training, scale.sequence_scale};
  MicroBatchLoss loss;
  for (int64_t i = 0; i < n_blocks; ++i) {
    c.blocks[i]->Forward(slot, mb, acts + i * N * D, acts + (i + 1) * N * D);
    loss.aux += c.blocks[i]->aux_loss(slot);
  }
  double ce = 0;
  if (c.head) {
    ce = c.head->Forward(slot, acts + n_blocks * N * D, s.targets.data<int32_t>(), N,
                         scale.token_scale);
    loss.ce_sum = c.head->ce_sum(slot);
    loss.tokens = N;
  } else {
    ops.copy(out, acts + n_blocks * N * D, N * D);
  }
  loss.loss = ce + loss.aux;
  return loss;
}

void Model::ChunkBackwardInput(int chunk, int slot, const float* dout, float* din) {
  Chunk& c = chunks_.at(chunk);
  Slot& s = c.slots.at(slot);
  const int64_t N = s.N, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  kernels::BackendOps<float>& ops = backend_.ops<float>();
  float* grads = ensure_floats(backend_, s.grads, (n_blocks + 1) * N * D);
  if (c.head) {
    c.head->BackwardInput(slot, grads + n_blocks * N * D);
  } else {
    ops.copy(grads + n_blocks * N * D, dout, N * D);
  }
  for (int64_t i = n_blocks - 1; i >= 0; --i) {
    c.blocks[i]->BackwardInput(slot, grads + (i + 1) * N * D, grads + i * N * D);
  }
  if (!c.embedding) ops.copy(din, grads, N * D);
}

void Model::ChunkBackwardWeight(int chunk, int slot, const ParamsDone& done) {
  Chunk& c = chunks_.at(chunk);
  Slot& s = c.slots.at(slot);
  auto report = [&](ParamRange r) {
    if (done && r.first < r.end) done(r.first, r.end);
  };
  if (c.head) {
    c.head->BackwardWeight(slot);
    report(c.head_params);
  }
  for (int i = static_cast<int>(c.blocks.size()) - 1; i >= 0; --i) {
    c.blocks[i]->BackwardWeight(slot);
    report(c.block_params[i]);
  }
  if (c.embedding) {
    c.embedding->BackwardWeight(s.inputs.data<int32_t>(), s.grads.data<float>(), s.N);
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

MicroBatchLoss Model::TrainMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                      const LossScale& scale) {
  require_whole(part_.chunks, "TrainMicroBatch");
  MicroBatchLoss loss = ChunkForward(0, 0, tokens, batch, seq_len, scale, true, nullptr, nullptr);
  ChunkBackwardInput(0, 0, nullptr, nullptr);
  ChunkBackwardWeight(0, 0);
  return loss;
}

MicroBatchLoss Model::EvalMicroBatch(const int32_t* tokens, int64_t batch, int64_t seq_len,
                                     const LossScale& scale) {
  require_whole(part_.chunks, "EvalMicroBatch");
  return ChunkForward(0, 0, tokens, batch, seq_len, scale, false, nullptr, nullptr);
}

}  // namespace tessera::trainer
