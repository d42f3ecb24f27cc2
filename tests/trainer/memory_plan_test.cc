// `tessera train --dry-run`'s plan (trainer/memory_plan.h) against what the layout shards: every
// parameter's AdamW moments are held once over the world, whichever schedule, including
// DualPipe, whose mirrored stage pairs hold each block twice but shard its moments over the pair.
#include "trainer/memory_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "trainer/model.h"
#include "trainer/optimizer.h"
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

// optimizer.state_dtype bf16 stores each moment in 2 bytes: every rank's optimizer state halves
// (the update widens them chunk by chunk on the stack: no scratch to plan).
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

// precision fp8 keeps the linears' inputs and the SwiGLU inputs in fp8 (1 byte a value and one
// fp32 scale per 128) and recomputes the SwiGLU outputs; their fp32 values live in the one
// workspace every context shares (trainer/layers/saved_activation.h). Hand count, one process,
// one micro-batch of N = 256 tokens, D = 256, dense F = 256, expert F = 128 (k = 2: R = 512
// expert rows), shared F = 128; widths multiples of 128, every buffer a multiple of the arena's
// 256-byte alignment, so the counts are exact. A kept (rows, C) activation saves
// rows * C * (4 - 1 - 4/128) bytes; a recomputed SwiGLU output rows * F * 4.
TEST(MemoryPlan, KeepsFp8ActivationsInAQuarterOfTheBytes) {
  auto plan = [](const std::string& precision) {
    return plan_memory(parse_recipe(kRecipe, "memory_plan_test",
                                    {"precision.compute=" + precision, "model.dim=256",
                                     "model.inter_dim=256", "model.moe_inter_dim=128"}),
                       kernels::Device::kCPU)
        .at(0);
  };
  const RankMemory bf16 = plan("bf16"), fp8 = plan("fp8");
  constexpr int64_t N = 256, D = 256, F = 256, Fe = 128, R = 2 * N, Fs = 128;
  auto kept = [](int64_t rows, int64_t cols) {
    return rows * cols * 4 - rows * cols - rows * cols / 32;
  };
  const int64_t attention = kept(N, D);                        // xn, 8 layers
  const int64_t dense = kept(N, D) + kept(N, 2 * F) + N * F * 4;  // xn, ab, h
  const int64_t moe = kept(R, 2 * Fe) + R * Fe * 4 + kept(N, 2 * Fs) + N * Fs * 4;  // x 7
  const int64_t saved = 8 * attention + dense + 7 * moe;
  // The workspace holds the largest block's fp32 values: the MoE block's ab, hp and the shared
  // expert's ab, h (the dense block's xn, ab, h are fewer).
  const int64_t workspace = (R * 2 * Fe + R * Fe + N * 2 * Fs + N * Fs) * 4;
  EXPECT_EQ(bf16.workspace_bytes, 0);
  EXPECT_EQ(fp8.workspace_bytes, workspace);
  ASSERT_EQ(bf16.context_bytes.size(), 1u);
  EXPECT_EQ(bf16.context_bytes[0] - fp8.context_bytes[0], saved);
  EXPECT_EQ(fp8.activations, fp8.context_bytes[0] + workspace);
  EXPECT_LT(fp8.activations, bf16.activations);
  EXPECT_NE(format_memory_plan({fp8}).find("+ws"), std::string::npos);
}

// The MoE blocks' packed exchange buffers (MoeBlock::exchange_buffer_bytes) against a hand count.
// dp = ep = 2, one micro-batch: N = 16 / 2 * 16 = 128 tokens per block, k = 2, 8 experts, 4
// per rank; 7 MoE layers (8 layers, the first dense). Token side N*k = 256 rows, expert side
// (worst case) ep * N * min(k, 4) = 512 rows. A row of dim 32: bf16 16 words (64 B), fp8 8 words
// of codes + 1 scale (36 B). Each buffer holds the wider of its forward and backward formats:
//   bf16: dispatch bf16 / grads bf16 -> 64 B; combine bf16 / grads fp32 (not packed) -> 64 B
//   fp8:  dispatch fp8 / grads fp8 -> 36 B; combine bf16 / grads bf16 -> 64 B
// bytes per block = (256 + 512) x (to-experts + from-experts row bytes).
TEST(MemoryPlan, CountsTheMoeExchangeBuffersOfEachPrecision) {
  auto plan = [](const std::string& precision, const std::vector<std::string>& more) {
    std::vector<std::string> sets = {"parallel.dp=2", "parallel.ep=2",
                                     "precision.compute=" + precision};
    sets.insert(sets.end(), more.begin(), more.end());
    return plan_memory(parse_recipe(kRecipe, "memory_plan_test", sets), kernels::Device::kCPU);
  };
  constexpr int64_t kMoeLayers = 7;
  for (const RankMemory& m : plan("fp32", {})) EXPECT_EQ(m.exchange, 0);
  const std::vector<RankMemory> bf16 = plan("bf16", {}), fp8 = plan("fp8", {});
  ASSERT_EQ(bf16.size(), 2u);
  ASSERT_EQ(bf16[0].contexts, std::vector<int>{1});
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(bf16[r].exchange, kMoeLayers * (256 + 512) * (64 + 64)) << "rank " << r;
    EXPECT_EQ(fp8[r].exchange, kMoeLayers * (256 + 512) * (36 + 64)) << "rank " << r;
    EXPECT_EQ(bf16[r].total(), bf16[r].parameters + bf16[r].gradients + bf16[r].optimizer +
                                   bf16[r].activations + bf16[r].communication +
                                   bf16[r].exchange);
  }
  // Node-aware over 2 nodes (dp = ep = 4, 2 ranks a node): N = 64, M = 2 nodes. First hop
  // (forward dispatch only): S = N min(M, k) = 128 sent, Rw = M N = 128 received; second hop
  // and the combine within the node: T = Rw min(k, 8 / M) = 256 and R = 4 N min(k, 2) = 512
  // rows, both directions. bf16: (128 + 128) x 64 + (256 + 512) x (64 + 64) per block.
  const std::vector<RankMemory> nodes =
      plan("bf16", {"parallel.dp=4", "parallel.ep=4", "parallel.ranks_per_node=2",
                    "model.n_group=2", "parallel.node_aware_dispatch=on"});
  ASSERT_EQ(nodes.size(), 4u);
  for (const RankMemory& m : nodes) {
    EXPECT_EQ(m.exchange, kMoeLayers * ((128 + 128) * 64 + (256 + 512) * (64 + 64)));
  }
  // A GPU's exchanges sit in host memory, outside its device plan.
  for (const RankMemory& m :
       plan_memory(parse_recipe(kRecipe, "memory_plan_test",
                                {"parallel.dp=2", "parallel.ep=2", "precision.compute=bf16"}),
                   kernels::Device::kCUDA)) {
    EXPECT_EQ(m.exchange, 0);
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
