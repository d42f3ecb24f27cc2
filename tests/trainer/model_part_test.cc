// A model part's parameter table is in layer order whatever the order of its chunks: DualPipe's
// stages k and pp-1-k hold the same two blocks on swapped chunks, and their ZeRO-1 group (the
// mirror pair) needs identical tables. The chunk indices stay the pipeline's: chunk c computes
// part.chunks[c].
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu_backend.h"
#include "trainer/model.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.vocab_size = 23;
  c.dim = 16;
  c.n_layers = 4;
  c.n_heads = 2;
  c.inter_dim = 24;
  c.moe_inter_dim = 8;
  c.n_experts = 4;
  c.n_shared_experts = 1;
  c.top_k = 2;
  c.first_dense_layers = 1;
  c.seq_aux_alpha = 0.01;
  c.init_std = 0.3;
  return c;
}

// Blocks 0 (embedding, layers 0-1) and 1 (layers 2-3, head) of a pp = 2 DualPipe: stage 0 holds
// them as chunks {0, 1}, stage 1 as chunks {1, 0}.
ModelPart Part(bool swapped) {
  const ModelChunkSpec first{0, 2, /*embedding=*/true, /*head=*/false};
  const ModelChunkSpec second{2, 4, /*embedding=*/false, /*head=*/true};
  ModelPart part;
  part.chunks = swapped ? std::vector{second, first} : std::vector{first, second};
  return part;
}

void ExpectSameTables(const ParamTable& a, const ParamTable& b) {
  ASSERT_EQ(a.descs().size(), b.descs().size());
  for (size_t i = 0; i < a.descs().size(); ++i) {
    EXPECT_EQ(a.descs()[i].name, b.descs()[i].name) << i;
    EXPECT_EQ(a.descs()[i].shape, b.descs()[i].shape) << a.descs()[i].name;
    EXPECT_EQ(a.descs()[i].offset, b.descs()[i].offset) << a.descs()[i].name;
  }
}

TEST(ModelPart, ParametersAreInLayerOrderWhateverTheChunkOrder) {
  const ModelConfig config = Config();
  const auto in_order = Model::Describe(config, Part(false));
  const auto swapped = Model::Describe(config, Part(true));
  ExpectSameTables(in_order->params(), swapped->params());
  // The whole model's DESIGN.md order: embedding first, head last.
  const std::vector<ParamDesc> whole = Model::WholeModelParams(config);
  ASSERT_EQ(swapped->params().descs().size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(swapped->params().descs()[i].name, whole[i].name) << i;
  }
  // Chunk indices are the pipeline's: the swapped part's chunk 0 is the head chunk.
  const int64_t head_arena = in_order->ChunkArenaBytes(1, 2, 5, kernels::Device::kCPU);
  const int64_t embed_arena = in_order->ChunkArenaBytes(0, 2, 5, kernels::Device::kCPU);
  ASSERT_NE(head_arena, embed_arena);
  EXPECT_EQ(swapped->ChunkArenaBytes(0, 2, 5, kernels::Device::kCPU), head_arena);
  EXPECT_EQ(swapped->ChunkArenaBytes(1, 2, 5, kernels::Device::kCPU), embed_arena);
}

struct Trained {
  double loss = 0;
  std::vector<float> values, grads;
  std::vector<std::string> moe_names;
};

// One micro-batch through block 0 then block 1 (the chunks `part` gives them), then back.
Trained TrainOnce(bool swapped) {
  const ModelConfig config = Config();
  kernels::CpuBackend cpu;
  Model model(config, cpu, Part(swapped), nullptr);
  model.params().init(3, config.init_std);
  model.params().zero_grads();
  const int first = swapped ? 1 : 0, second = swapped ? 0 : 1;
  const int64_t batch = 2, seq = 5, n = batch * seq * config.dim;
  Rng rng(9);
  std::vector<int32_t> tokens(batch * (seq + 1));
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
  const LossScale scale{1.0 / (batch * seq), 1.0 / batch};
  auto a = model.NewChunkContext(first, batch, seq);
  auto b = model.NewChunkContext(second, batch, seq);
  std::vector<float> boundary(n), boundary_grad(n);
  Trained t;
  t.loss = model.ChunkForward(*a, tokens.data(), scale, true, nullptr, boundary.data()).loss;
  t.loss += model.ChunkForward(*b, tokens.data(), scale, true, boundary.data(), nullptr).loss;
  model.ChunkBackwardInput(*b, nullptr, boundary_grad.data());
  model.ChunkBackwardWeight(*b);
  model.ChunkBackwardInput(*a, boundary_grad.data(), nullptr);
  model.ChunkBackwardWeight(*a);
  ParamTable& p = model.params();
  t.values.assign(p.values().data<float>(), p.values().data<float>() + p.padded_numel());
  t.grads.assign(p.grads().data<float>(), p.grads().data<float>() + p.padded_numel());
  for (const MoeBlock* moe : model.moe_blocks()) t.moe_names.push_back(moe->name());
  return t;
}

TEST(ModelPart, SwappedChunksTrainTheSameBlocksIntoTheSameTable) {
  const Trained a = TrainOnce(false), b = TrainOnce(true);
  EXPECT_GT(a.loss, 0.0);
  EXPECT_EQ(std::memcmp(&a.loss, &b.loss, sizeof(double)), 0) << a.loss << " vs " << b.loss;
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(a.grads, b.grads);  // element for element: the same offsets hold the same gradients
  EXPECT_EQ(a.moe_names, b.moe_names);  // MoE loads are summed over the pair in this order
  EXPECT_EQ(a.moe_names.size(), 3u);
}

}  // namespace
}  // namespace tessera::trainer
