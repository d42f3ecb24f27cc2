// `tessera train --dry-run`'s plan (trainer/memory_plan.h) against what the layout shards: every
// parameter's AdamW moments are held once over the world, whichever schedule, including
// DualPipe, whose mirrored stage pairs hold each block twice but shard its moments over the pair.
#include "trainer/memory_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trainer/model.h"
#include "trainer/recipe.h"

namespace tessera::trainer {
namespace {

constexpr const char* kRecipe = R"(
run:
  dir: runs/memory-plan-test
model:
  vocab_size: 64
  dim: 32
  n_layers: 8
  n_heads: 2
  attention: mha
  inter_dim: 64
  moe_inter_dim: 32
  n_experts: 8
  n_shared_experts: 1
  top_k: 2
  n_group: 1
  topk_group: 1
  first_dense_layers: 1
train:
  steps: 1
  seq_len: 16
  global_batch: 16
data:
  path: data-cache/none
)";

Recipe Layout(int pp, int dp, int ep, int mb, const std::string& schedule) {
  return parse_recipe(kRecipe, "memory_plan_test",
                      {"parallel.pp=" + std::to_string(pp), "parallel.dp=" + std::to_string(dp),
                       "parallel.ep=" + std::to_string(ep),
                       "parallel.micro_batches=" + std::to_string(mb),
                       "parallel.schedule=" + schedule});
}

int64_t WholeModelElements(const ModelConfig& config) {
  int64_t n = 0;
  for (const ParamDesc& d : Model::WholeModelParams(config)) n += d.numel();
  return n;
}

TEST(MemoryPlan, OptimizerMomentsAreHeldOnceOverTheWorld) {
  struct Case {
    int pp, dp, ep, mb;
    const char* schedule;
  };
  for (const Case& c : {Case{2, 2, 2, 4, "1f1b"}, Case{2, 2, 2, 4, "dualpipe"},
                        Case{4, 1, 1, 8, "dualpipe"}, Case{2, 1, 1, 4, "dualpipe"}}) {
    SCOPED_TRACE(std::string(c.schedule) + " pp=" + std::to_string(c.pp) +
                 " dp=" + std::to_string(c.dp) + " ep=" + std::to_string(c.ep));
    const Recipe recipe = Layout(c.pp, c.dp, c.ep, c.mb, c.schedule);
    const std::vector<RankMemory> plan = plan_memory(recipe, kernels::Device::kCPU);
    ASSERT_EQ(static_cast<int>(plan.size()), c.pp * c.dp);
    int64_t moments = 0;
    for (const RankMemory& m : plan) moments += m.optimizer;
    const int64_t exact = 2 * 4 * WholeModelElements(recipe.model);
    // Each ZeRO-1 region is padded by less than its group size per rank (at most 2 dp).
    const int64_t padding = 2 * 4 * int64_t{c.pp * c.dp} * 2 * (2 * c.dp);
    EXPECT_GE(moments, exact);
    EXPECT_LE(moments, exact + padding);
  }
}

// optimizer.state_dtype bf16 stores each moment in 2 bytes: every rank's optimizer state halves,
// and nothing else changes.
TEST(MemoryPlan, Bf16OptimizerStateHalvesTheMoments) {
  const Recipe fp32 = Layout(2, 2, 2, 4, "1f1b");
  Recipe bf16 = fp32;
  bf16.optimizer.state_dtype = "bf16";
  const std::vector<RankMemory> a = plan_memory(fp32, kernels::Device::kCPU);
  const std::vector<RankMemory> b = plan_memory(bf16, kernels::Device::kCPU);
  ASSERT_EQ(a.size(), b.size());
  for (size_t r = 0; r < a.size(); ++r) {
    EXPECT_GT(a[r].optimizer, 0) << "rank " << r;
    EXPECT_EQ(b[r].optimizer * 2, a[r].optimizer) << "rank " << r;
    EXPECT_EQ(b[r].total(), a[r].total() - a[r].optimizer / 2) << "rank " << r;
  }
}

TEST(MemoryPlan, DualPipeMirrorPairsHoldTheSameParameters) {
  const std::vector<RankMemory> plan =
      plan_memory(Layout(4, 1, 1, 8, "dualpipe"), kernels::Device::kCPU);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].parameters, plan[3].parameters);
  EXPECT_EQ(plan[1].parameters, plan[2].parameters);
  EXPECT_EQ(plan[0].optimizer, plan[3].optimizer);
  // Two blocks per rank: what 1F1B's stages k and pp-1-k hold together, plus the padding of each
  // region to the pair (less than 2 elements each).
  const std::vector<RankMemory> looped =
      plan_memory(Layout(4, 1, 1, 8, "1f1b"), kernels::Device::kCPU);
  for (int k : {0, 1}) {
    const int64_t both = looped[k].parameters + looped[3 - k].parameters;
    EXPECT_GE(plan[k].parameters, both);
    EXPECT_LE(plan[k].parameters, both + 2 * 4);
  }
}

}  // namespace
}  // namespace tessera::trainer

namespace tessera::trainer {
namespace {

// Node-aware dispatch carves its stage buffers too: the plan of an EP group spanning two nodes
// (parallel.ranks_per_node=2) holds more activation bytes with it on than with the flat exchange,
// and a bad node layout is the same RecipeError training would raise.
TEST(MemoryPlan, CountsNodeAwareDispatchBuffersAndChecksNodeLimitedRouting) {
  auto plan = [](const std::string& dispatch, const std::string& n_group) {
    return plan_memory(parse_recipe(kRecipe, "memory_plan_test",
                                    {"parallel.dp=4", "parallel.ep=4", "parallel.ranks_per_node=2",
                                     "model.n_group=" + n_group,
                                     "parallel.node_aware_dispatch=" + dispatch}),
                       kernels::Device::kCPU);
  };
  const std::vector<RankMemory> on = plan("on", "2"), off = plan("off", "2");
  ASSERT_EQ(on.size(), 4u);
  ASSERT_EQ(off.size(), 4u);
  for (size_t r = 0; r < on.size(); ++r) {
    EXPECT_GT(on[r].context_bytes.at(0), off[r].context_bytes.at(0)) << "rank " << r;
  }
  try {
    plan("auto", "1");
    ADD_FAILURE() << "model.n_group=1 over an EP group spanning 2 nodes was accepted";
  } catch (const RecipeError& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_group"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera::trainer
