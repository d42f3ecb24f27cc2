// Aux-loss-free balancing: bias_e += gamma * sign(mean_load - load_e) after each step.
#include <gtest/gtest.h>

#include "kernels/cpu_backend.h"
#include "trainer/model.h"

namespace tessera::trainer {
namespace {

ModelConfig OneMoeLayer(int64_t top_k) {
  ModelConfig c;
  c.vocab_size = 11;
  c.dim = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.moe_inter_dim = 4;
  c.n_experts = 4;
  c.top_k = top_k;
  c.first_dense_layers = 0;
  return c;
}

TEST(MoeBias, UpdateMovesTowardsBalanceAndReportsRatio) {
  kernels::CpuBackend cpu;
  Model model(OneMoeLayer(/*top_k=*/1), cpu);
  MoeBlock* moe = model.moe_blocks().at(0);
  moe->load_counts() = {6, 2, 0, 0};  // mean 2
  const MoeBlock::RoutingLoad load = moe->update_bias(0.01);
  EXPECT_DOUBLE_EQ(load.expert_max_over_mean, 3.0);
  EXPECT_DOUBLE_EQ(load.ep_rank_max_over_mean, 1.0);  // one rank holds every expert
  const float* bias = model.params().value_ptr(model.params().index("layers.0.moe.gate.bias"));
  EXPECT_FLOAT_EQ(bias[0], -0.01f);
  EXPECT_FLOAT_EQ(bias[1], 0.0f);
  EXPECT_FLOAT_EQ(bias[2], 0.01f);
  EXPECT_FLOAT_EQ(bias[3], 0.01f);
  EXPECT_EQ(moe->load_counts(), (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(MoeBias, EpRankLoadSumsEachRanksExperts) {
  ModelPart part = ModelPart::whole(OneMoeLayer(/*top_k=*/1));
  part.ep = 2;  // experts 0, 1 on EP rank 0; 2, 3 on rank 1
  const auto model = Model::Describe(OneMoeLayer(/*top_k=*/1), part);
  MoeBlock* moe = model->moe_blocks().at(0);
  moe->load_counts() = {3, 3, 0, 2};  // ranks 6 and 2, mean 4
  const MoeBlock::RoutingLoad load = moe->update_bias(0.0);
  EXPECT_DOUBLE_EQ(load.expert_max_over_mean, 1.5);
  EXPECT_DOUBLE_EQ(load.ep_rank_max_over_mean, 1.5);
  moe->load_counts() = {0, 0, 0, 0};
  EXPECT_DOUBLE_EQ(moe->update_bias(0.0).ep_rank_max_over_mean, 0.0);  // nothing routed
}

TEST(MoeBias, TrainingForwardCountsEveryRoutedTokenEvalDoesNot) {
  kernels::CpuBackend cpu;
  Model model(OneMoeLayer(/*top_k=*/2), cpu);
  model.params().init(1, 0.1);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // 2 x (4 + 1)
  const LossScale scale{1.0 / 8, 0.5};
  model.EvalMicroBatch(tokens.data(), 2, 4, scale);
  int64_t total = 0;
  for (int64_t l : model.moe_blocks()[0]->load_counts()) total += l;
  EXPECT_EQ(total, 0);
  model.TrainMicroBatch(tokens.data(), 2, 4, scale);
  for (int64_t l : model.moe_blocks()[0]->load_counts()) total += l;
  EXPECT_EQ(total, 8 * 2);
}

}  // namespace
}  // namespace tessera::trainer
