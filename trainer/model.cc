#include "trainer/model.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "trainer/layers/transformer_layer.h"

namespace tessera::trainer {

double mtp_loss_weight(const ModelConfig& config, int64_t tokens_seen) {
  if (config.mtp_depth == 0) return 0.0;
  const bool switched =
      config.mtp_lambda_switch_tokens > 0 && tokens_seen >= config.mtp_lambda_switch_tokens;
  return (switched ? config.mtp_lambda_after : config.mtp_lambda) /
         static_cast<double>(config.mtp_depth);
}

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
    blocks.push_back(make_attention_block(table, config, layer_prefix(i)));
    blocks.push_back(make_ffn_block(table, config, layer_prefix(i), i));
  }
  OutputHead head(table, config);
  std::vector<std::unique_ptr<MtpModule>> mtp;
  for (int d = 0; d < config.mtp_depth; ++d) {
    mtp.push_back(std::make_unique<MtpModule>(table, config, d, table.index("embed.weight"),
                                              table.index("head.weight")));
  }
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
  AddChunks(part.ep > 1 ? ep_comm : nullptr, part.ep > 1 ? ep_host_comm : nullptr);
  params_.finalize(backend, dense_multiple, expert_multiple);
}

Model::Model(const ModelConfig& config, const ModelPart& part, Described)
    : config_(config), part_(part) {
  if (part.chunks.empty()) throw std::logic_error("Model: a model part needs at least one chunk");
  AddChunks(nullptr, nullptr);
}

std::unique_ptr<Model> Model::Describe(const ModelConfig& config, const ModelPart& part) {
  return std::unique_ptr<Model>(new Model(config, part, Described{}));
}

kernels::Backend& Model::backend() {
  if (!backend_) throw std::logic_error("Model: a described model has no backend");
  return *backend_;
}

void Model::AddChunks(parallel::Comm* ep_comm, parallel::Comm* ep_host_comm) {
  // Parameters (and MoE blocks) are added in layer order, whatever the chunks' pipeline order:
  // the two holders of a mirrored block (DualPipe: stages k and pp-1-k, whose chunks hold the
  // same two blocks in swapped order) then have identical tables, as the ZeRO-1 shards over the
  // pair, its reduce-scatters and its load sums need. chunks_ keeps the pipeline's chunk indices.
  const int n = static_cast<int>(part_.chunks.size());
  std::vector<int> order(n);
  for (int c = 0; c < n; ++c) order[c] = c;
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return part_.chunks[a].first_layer < part_.chunks[b].first_layer;
  });
  chunks_.resize(n);
  for (int c : order) chunks_[c] = MakeChunk(part_.chunks[c], ep_comm, ep_host_comm);
}

Model::Chunk Model::MakeChunk(const ModelChunkSpec& spec, parallel::Comm* ep_comm,
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
    embedding_params_ = c.embedding_params;
    ++embedding_writers_;
  }
  for (int i = spec.first_layer; i < spec.end_layer; ++i) {
    c.block_params.push_back(added(
        [&] { c.blocks.push_back(make_attention_block(params_, config_, layer_prefix(i))); }));
    c.block_params.push_back(added([&] {
      c.blocks.push_back(make_ffn_block(params_, config_, layer_prefix(i), i, part_.ep,
                                        part_.ep_rank, ep_comm, ep_host_comm));
      if (auto* moe = dynamic_cast<MoeBlock*>(c.blocks.back().get())) moe_blocks_.push_back(moe);
    }));
  }
  if (spec.head) {
    c.head_params = added([&] { c.head = std::make_unique<OutputHead>(params_, config_); });
    if (config_.mtp_depth > 0) {
      // The chunks are built in layer order, so an embedding this rank holds exists by now;
      // else this rank holds a copy, tied to the first stage's.
      if (embedding_writers_ == 0) {
        if (!part_.embedding_tied) {
          throw std::logic_error("Model: MTP without the embedding on this rank needs "
                                 "ModelPart::embedding_tied");
        }
        ParamDesc copy{"embed.weight", {config_.vocab_size, config_.dim}};
        copy.tied_copy = true;
        embedding_params_ = added([&] { params_.add(copy); });
      }
      if (!spec.embedding) ++embedding_writers_;
      const int embed = params_.index("embed.weight"), head = params_.index("head.weight");
      for (int d = 0; d < config_.mtp_depth; ++d) {
        c.mtp_params.push_back(added([&] {
          c.mtp.push_back(std::make_unique<MtpModule>(params_, config_, d, embed, head, part_.ep,
                                                      part_.ep_rank, ep_comm, ep_host_comm));
          if (auto* moe = dynamic_cast<const MoeBlock*>(&c.mtp.back()->ffn())) {
            moe_blocks_.push_back(const_cast<MoeBlock*>(moe));
          }
        }));
      }
    }
  }
  return c;
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
  const int64_t depth = static_cast<int64_t>(c.mtp.size());
  if (depth > 0) {
    ctx.mtp_ids = arena.take<int32_t>(depth * N);
    ctx.mtp_targets = arena.take<int32_t>(depth * N);
    ctx.mtp_dh.assign(depth, nullptr);
    for (int64_t d = 0; d < depth; ++d) {
      ctx.mtp_dh[d] = arena.take<float>(N * D);
      c.mtp[d]->Carve(*ctx.mtp[d], arena, mb);
    }
  }
}

std::vector<const Block*> Model::chunk_blocks(int chunk) const {
  const Chunk& c = chunks_.at(static_cast<size_t>(chunk));
  std::vector<const Block*> out;
  for (const auto& b : c.blocks) out.push_back(b.get());
  for (const auto& m : c.mtp) {
    out.push_back(&m->attention());
    out.push_back(&m->ffn());
  }
  return out;
}

Model::ChunkBytes Model::MeasureChunk(int chunk, int64_t batch, int64_t seq_len,
                                      kernels::Device device) const {
  const Chunk& c = chunks_.at(chunk);
  ActivationArena workspace(device);
  ChunkContext ctx(ActivationArena{device});
  ctx.arena.attach_workspace(&workspace);
  for (const auto& block : c.blocks) ctx.blocks.push_back(block->NewContext());
  for (const auto& m : c.mtp) ctx.mtp.push_back(m->NewContext());
  CarveChunk(c, ctx, ctx.arena, batch, seq_len, /*training=*/true, 0.0);
  return {static_cast<int64_t>(ctx.arena.used()), static_cast<int64_t>(workspace.peak())};
}

std::unique_ptr<ChunkContext> Model::NewChunkContext(int chunk, int64_t batch, int64_t seq_len) {
  kernels::Backend& be = backend();
  const Chunk& c = chunks_.at(chunk);
  const ChunkBytes bytes = MeasureChunk(chunk, batch, seq_len, be.device());
  if (workspace_.measuring() || static_cast<int64_t>(workspace_.capacity()) < bytes.workspace) {
    workspace_ = ActivationArena(be, static_cast<size_t>(bytes.workspace));
  }
  auto ctx =
      std::make_unique<ChunkContext>(ActivationArena(be, static_cast<size_t>(bytes.arena)));
  ctx->arena.attach_workspace(&workspace_);
  ctx->chunk = chunk;
  ctx->batch = batch;
  ctx->seq_len = seq_len;
  for (const auto& block : c.blocks) ctx->blocks.push_back(block->NewContext());
  for (const auto& m : c.mtp) ctx->mtp.push_back(m->NewContext());
  return ctx;
}

namespace {
// The layer of a block named "layers.{i}....", for traces; -1 otherwise.
int layer_of(const Block& block) {
  const std::string& name = block.name();
  constexpr std::string_view kPrefix = "layers.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  int layer = 0;
  const char* first = name.data() + kPrefix.size();
  const auto [end, ec] = std::from_chars(first, name.data() + name.size(), layer);
  return ec == std::errc() && end != first ? layer : -1;
}
}  // namespace

ChunkSteps Model::ForwardSteps(ChunkContext& ctx, const int32_t* tokens, const LossScale& scale,
                               bool training, const float* in, float* out,
                               MicroBatchLoss& loss) {
  kernels::Backend& be = backend();
  const Chunk& c = chunks_.at(ctx.chunk);
  const int64_t N = ctx.batch * ctx.seq_len, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  ChunkSteps steps;
  // Glue before the blocks: carve the arena, stage the token ids, embed (or take the input).
  steps.push_back({"input", false, [this, &be, &c, &ctx, tokens, scale, training, in, N, D] {
    // The arena is sized for exactly this carving: a new micro-batch starts from its beginning.
    ctx.arena.reset();
    CarveChunk(c, ctx, ctx.arena, ctx.batch, ctx.seq_len, training, scale.sequence_scale);
    if (c.embedding || c.head) StageIds(c, ctx, tokens);
    if (c.embedding) {
      c.embedding->Forward(ctx.inputs, ctx.acts, N);
    } else {
      be.ops<float>().copy(ctx.acts, in, N * D);
    }
  }});
  for (int64_t i = 0; i < n_blocks; ++i) {
    const Block& block = *c.blocks[i];
    const int layer = layer_of(block);
    steps.push_back({"begin", false, [&block, &ctx, i, N, D] {
      block.BeginForward(*ctx.blocks[i], ctx.acts + i * N * D, ctx.acts + (i + 1) * N * D);
    }, 'F', layer});
    for (const BlockPiece& piece : block.pieces().forward) {
      steps.push_back({piece.name, piece.communicates,
                       [&piece, &ctx, i] { piece.run(*ctx.blocks[i]); }, 'F', layer,
                       piece.waits});
    }
    steps.push_back({"end", false,
                     [&ctx, &loss, i] { loss.aux += ctx.blocks[i]->aux_loss; }, 'F', layer});
  }
  steps.push_back({"output", false, [&be, &c, &ctx, &loss, scale, out, n_blocks, N, D] {
    double ce = 0;
    if (c.head) {
      ce = c.head->Forward(ctx.head, ctx.acts + n_blocks * N * D, ctx.targets, scale.token_scale);
      loss.ce_sum += ctx.head.ce_sum;
      loss.tokens += N;
    } else {
      be.ops<float>().copy(out, ctx.acts + n_blocks * N * D, N * D);
    }
    loss.loss += ce + loss.aux;
  }});
  if (training && !c.mtp.empty()) AppendMtpForwardSteps(c, ctx, scale, loss, steps);
  return steps;
}

void Model::StageIds(const Chunk& c, ChunkContext& ctx, const int32_t* tokens) {
  kernels::Backend& be = backend();
  const int64_t B = ctx.batch, T = ctx.seq_len, N = B * T;
  const int64_t depth = static_cast<int64_t>(c.mtp.size());
  const int64_t row_len = config_.row_tokens(T);
  const int64_t total = (2 + 2 * depth) * N;
  // Split on the host, then moved to the device if it is not the host.
  const bool host = be.capabilities().host_accessible;
  if (!host && (!ctx.host_ids.defined() || ctx.host_ids.numel() < total)) {
    ctx.host_ids = be.alloc_host({total}, kernels::DType::kI32);
  }
  int32_t* staged = host ? nullptr : ctx.host_ids.data<int32_t>();
  // The buffers and the row offset (shift) of their first token: inputs t_i, targets t_{i+1},
  // depth k's inputs t_{i+k} and targets t_{i+k+1}.
  struct Ids {
    int32_t* device;
    int64_t shift;
  };
  std::vector<Ids> ids{{ctx.inputs, 0}, {ctx.targets, 1}};
  for (int64_t d = 0; d < depth; ++d) {
    ids.push_back({ctx.mtp_ids + d * N, d + 1});
    ids.push_back({ctx.mtp_targets + d * N, d + 2});
  }
  for (size_t j = 0; j < ids.size(); ++j) {
    int32_t* dst = host ? ids[j].device : staged + j * N;
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* row = tokens + b * row_len + ids[j].shift;
      std::copy(row, row + T, dst + b * T);
    }
    if (!host) be.copy_from_host(ids[j].device, dst, sizeof(int32_t) * N);
  }
}

void Model::AppendMtpForwardSteps(const Chunk& c, ChunkContext& ctx, const LossScale& scale,
                                  MicroBatchLoss& loss, ChunkSteps& steps) {
  const int64_t N = ctx.batch * ctx.seq_len;
  const int depth = static_cast<int>(c.mtp.size());
  loss.mtp_ce_sum.assign(depth, 0.0);
  for (int d = 0; d < depth; ++d) {
    const MtpModule& m = *c.mtp[d];
    MtpModule::Context& mc = *ctx.mtp[d];
    steps.push_back({"mtp input", false, [&m, &mc, &ctx, d, N] {
      const float* h_prev = d == 0 ? ctx.head.xn : ctx.mtp[d - 1]->out.xn;  // h^{k-1}
      m.InputForward(mc, h_prev, ctx.mtp_ids + d * N);
    }, 'F'});
    const std::pair<const Block*, BlockContext*> blocks[] = {{&m.attention(), mc.attn.get()},
                                                             {&m.ffn(), mc.ffn.get()}};
    for (int b = 0; b < 2; ++b) {
      const auto [block, bctx] = blocks[b];
      steps.push_back({"begin", false, [block, bctx, &mc, b] {
        const float* in = b == 0 ? mc.h_in : mc.mid;
        block->BeginForward(*bctx, in, b == 0 ? mc.mid : mc.z);
      }, 'F'});
      for (const BlockPiece& piece : block->pieces().forward) {
        steps.push_back({piece.name, piece.communicates, [&piece, bctx] { piece.run(*bctx); }, 'F',
                         -1, piece.waits});
      }
    }
    steps.push_back({"mtp output", false, [&m, &mc, &ctx, &loss, scale, d, N] {
      const double aux = mc.attn->aux_loss + mc.ffn->aux_loss;
      const double mtp = m.OutputForward(mc, ctx.mtp_targets + d * N,
                                         scale.token_scale * scale.mtp_weight);
      loss.aux += aux;
      loss.loss += aux + mtp;
      loss.mtp_ce_sum[d] += mc.out.ce_sum;
    }, 'F'});
  }
}

void Model::AppendMtpBackwardSteps(const Chunk& c, ChunkContext& ctx, bool with_weights,
                                   const ParamsDone& done, ChunkSteps& steps) {
  const int depth = static_cast<int>(c.mtp.size());
  for (int d = depth - 1; d >= 0; --d) {
    const MtpModule& m = *c.mtp[d];
    MtpModule::Context& mc = *ctx.mtp[d];
    steps.push_back({"mtp output", false, [&m, &mc, &ctx, d, depth] {
      m.OutputBackward(mc, d + 1 < depth ? ctx.mtp_dh[d + 1] : nullptr);
    }, 'B'});
    const std::pair<const Block*, BlockContext*> blocks[] = {{&m.ffn(), mc.ffn.get()},
                                                             {&m.attention(), mc.attn.get()}};
    for (int b = 0; b < 2; ++b) {
      const auto [block, bctx] = blocks[b];
      steps.push_back({"begin", false, [block, bctx, &mc, b] {
        if (b == 0) {
          block->BeginBackward(*bctx, mc.dz, mc.dmid);
        } else {
          block->BeginBackward(*bctx, mc.dmid, mc.dh_in);
        }
      }, 'B'});
      for (const BlockPiece& piece : block->pieces().backward_input) {
        steps.push_back({piece.name, piece.communicates, [&piece, bctx] { piece.run(*bctx); }, 'B',
                         -1, piece.waits});
      }
    }
    steps.push_back({"mtp input", false, [&m, &mc, &ctx, d] { m.InputBackward(mc, ctx.mtp_dh[d]); },
                     'B'});
    if (with_weights) AppendMtpWeightSteps(c, ctx, d, done, steps);
  }
}

void Model::AppendMtpWeightSteps(const Chunk& c, ChunkContext& ctx, int d, const ParamsDone& done,
                                 ChunkSteps& steps) {
  const MtpModule& m = *c.mtp[d];
  MtpModule::Context& mc = *ctx.mtp[d];
  steps.push_back({"mtp output weights", false, [&m, &mc] { m.OutputWeights(mc); }, 'W'});
  const std::pair<const Block*, BlockContext*> blocks[] = {{&m.ffn(), mc.ffn.get()},
                                                           {&m.attention(), mc.attn.get()}};
  for (const auto& [block, bctx] : blocks) {
    for (const BlockPiece& piece : block->pieces().backward_weight) {
      steps.push_back({piece.name, piece.communicates, [&piece, bctx] { piece.run(*bctx); }, 'W',
                       -1, piece.waits});
    }
  }
  steps.push_back({"mtp input weights", false, [this, &m, &mc, &c, d, done] {
    m.InputWeights(mc);
    const ParamRange r = c.mtp_params[d];
    if (done) done(r.first, r.end);
    // The last depth to run (d = 0) has added its part of embed.weight's gradient.
    if (d == 0 && !c.embedding) ReportEmbeddingDone(done);
  }, 'W'});
}

void Model::ReportEmbeddingDone(const ParamsDone& done) {
  if (!done || part_.embedding_tied) return;  // the caller sums the pair's gradients first
  if (++embedding_reports_ < embedding_writers_) return;
  embedding_reports_ = 0;
  done(embedding_params_.first, embedding_params_.end);
}

void Model::AppendBackwardSteps(ChunkContext& ctx, const float* dout, float* din,
                                bool with_weights, const ParamsDone& done, ChunkSteps& steps) {
  kernels::Backend& be = backend();
  const Chunk& c = chunks_.at(ctx.chunk);
  const int64_t N = ctx.batch * ctx.seq_len, D = config_.dim;
  const int64_t n_blocks = static_cast<int64_t>(c.blocks.size());
  if (c.head && !c.mtp.empty()) AppendMtpBackwardSteps(c, ctx, with_weights, done, steps);
  steps.push_back({"output", false, [&be, &c, &ctx, dout, n_blocks, N, D] {
    if (c.head) {
      // With MTP, depth 1 also read the head's normed output h^0.
      c.head->BackwardInput(ctx.head, ctx.grads + n_blocks * N * D,
                            c.mtp.empty() ? nullptr : ctx.mtp_dh[0]);
    } else {
      be.ops<float>().copy(ctx.grads + n_blocks * N * D, dout, N * D);
    }
  }, 'B'});
  if (with_weights && c.head) AppendHeadWeightSteps(c, ctx, done, steps);
  for (int64_t i = n_blocks - 1; i >= 0; --i) {
    const Block& block = *c.blocks[i];
    const int layer = layer_of(block);
    steps.push_back({"begin", false, [&block, &ctx, i, N, D] {
      block.BeginBackward(*ctx.blocks[i], ctx.grads + (i + 1) * N * D, ctx.grads + i * N * D);
    }, 'B', layer});
    for (const BlockPiece& piece : block.pieces().backward_input) {
      steps.push_back({piece.name, piece.communicates,
                       [&piece, &ctx, i] { piece.run(*ctx.blocks[i]); }, 'B', layer,
                       piece.waits});
    }
    if (with_weights) AppendBlockWeightSteps(c, ctx, static_cast<int>(i), done, steps);
  }
  steps.push_back({"input", false, [&be, &c, &ctx, din, N, D] {
    if (!c.embedding) be.ops<float>().copy(din, ctx.grads, N * D);
  }, 'B'});
  if (with_weights && c.embedding) AppendEmbeddingWeightSteps(c, ctx, done, steps);
}

void Model::AppendHeadWeightSteps(const Chunk& c, ChunkContext& ctx, const ParamsDone& done,
                                  ChunkSteps& steps) {
  steps.push_back({"head weights", false, [&c, &ctx, done] {
    c.head->BackwardWeight(ctx.head);
    if (done && c.head_params.first < c.head_params.end) {
      done(c.head_params.first, c.head_params.end);
    }
  }, 'W'});
}

void Model::AppendBlockWeightSteps(const Chunk& c, ChunkContext& ctx, int i, const ParamsDone& done,
                                   ChunkSteps& steps) {
  const Block& block = *c.blocks[i];
  const int layer = layer_of(block);
  for (const BlockPiece& piece : block.pieces().backward_weight) {
    steps.push_back({piece.name, piece.communicates,
                     [&piece, &ctx, i] { piece.run(*ctx.blocks[i]); }, 'W', layer,
                     piece.waits});
  }
  const ParamRange r = c.block_params[i];
  if (done && r.first < r.end) {
    steps.push_back(
        {"weights done", false, [done, r] { done(r.first, r.end); }, 'W', layer});
  }
}

void Model::AppendEmbeddingWeightSteps(const Chunk& c, ChunkContext& ctx, const ParamsDone& done,
                                       ChunkSteps& steps) {
  steps.push_back({"embedding weights", false, [this, &c, &ctx, done] {
    c.embedding->BackwardWeight(ctx.inputs, ctx.grads, ctx.batch * ctx.seq_len);
    ReportEmbeddingDone(done);
  }, 'W'});
}

MicroBatchLoss Model::ChunkForward(ChunkContext& ctx, const int32_t* tokens,
                                   const LossScale& scale, bool training, const float* in,
                                   float* out, const StepObserver& observer) {
  MicroBatchLoss loss;
  run_steps(ForwardSteps(ctx, tokens, scale, training, in, out, loss), observer);
  return loss;
}

void Model::ChunkBackwardInput(ChunkContext& ctx, const float* dout, float* din,
                               const StepObserver& observer) {
  ChunkSteps steps;
  AppendBackwardSteps(ctx, dout, din, /*with_weights=*/false, {}, steps);
  run_steps(steps, observer);
}

void Model::ChunkBackwardWeight(ChunkContext& ctx, const ParamsDone& done,
                                const StepObserver& observer) {
  const Chunk& c = chunks_.at(ctx.chunk);
  ChunkSteps steps;
  for (int d = static_cast<int>(c.mtp.size()) - 1; d >= 0; --d) {
    AppendMtpWeightSteps(c, ctx, d, done, steps);
  }
  if (c.head) AppendHeadWeightSteps(c, ctx, done, steps);
  for (int i = static_cast<int>(c.blocks.size()) - 1; i >= 0; --i) {
    AppendBlockWeightSteps(c, ctx, i, done, steps);
  }
  if (c.embedding) AppendEmbeddingWeightSteps(c, ctx, done, steps);
  run_steps(steps, observer);
}

MicroBatchLoss Model::ChunkForwardBackward(ChunkContext& f, const int32_t* tokens,
                                           const LossScale& scale, const float* in, float* out,
                                           ChunkContext& b, const float* dout, float* din,
                                           const ParamsDone& done, const StepObserver& observer) {
  if (&f == &b) throw std::logic_error("Model::ChunkForwardBackward: one context for both halves");
  MicroBatchLoss loss;
  const ChunkSteps forward = ForwardSteps(f, tokens, scale, /*training=*/true, in, out, loss);
  ChunkSteps backward;
  AppendBackwardSteps(b, dout, din, /*with_weights=*/true, done, backward);
  run_overlapped(backward, forward, observer);
  return loss;
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
  for (size_t d = 0; d < c.mtp.size(); ++d) {
    if (&c.mtp[d]->ffn() == moe) return moe->routing(*whole_->mtp[d]->ffn);
  }
  throw std::logic_error("Model::routing: MoE block not in the whole-model chunk");
}

}  // namespace tessera::trainer
