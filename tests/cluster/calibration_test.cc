// cluster/calibration.h: what `tessera plan calibrate` measures for a recipe (every GEMM shape of
// its micro-batch, per precision; the attention cores, within the memory budget), the helpers'
// arithmetic, and the collective measurements on the thread-backed fake communicator (positive,
// equal on every rank; never timed against a threshold). The mpirun run of the command is
// tests/cluster/plan_calibrate_test.sh.
#include "cluster/calibration.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <tuple>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "tests/recipes_dir.h"
#include "trainer/flop_count.h"

namespace tessera::cluster {
namespace {

using trainer::Recipe;

using test_support::recipes_dir;

Recipe recipe(const std::string& name, const std::vector<std::string>& overrides = {}) {
  return trainer::load_recipe((recipes_dir() / name).string(), overrides);
}

bool has(const CalibrationPlan& plan, const GemmRequest& g) {
  return std::find(plan.gemms.begin(), plan.gemms.end(), g) != plan.gemms.end();
}

TEST(Calibration, MicroBatchTokens) {
  const Recipe bench = recipe("bench-moe.yaml");  // global_batch 8, seq_len 256
  EXPECT_EQ(micro_batch_rows(bench), 8);
  EXPECT_EQ(micro_batch_tokens(bench), 2048);
  const Recipe split =
      recipe("bench-moe.yaml", {"parallel.dp=2", "parallel.micro_batches=2"});
  EXPECT_EQ(micro_batch_rows(split), 2);
  EXPECT_EQ(micro_batch_tokens(split), 512);
}

TEST(Calibration, PrecisionsAreFp32PlusWhatRecipesAndFlagsName) {
  const Recipe fp32 = recipe("tiny-moe.yaml");
  const Recipe fp8 = recipe("tiny-moe.yaml", {"precision.compute=fp8"});
  EXPECT_EQ(calibration_precisions({fp32}, {}), (std::vector<std::string>{"fp32"}));
  EXPECT_EQ(calibration_precisions({fp32, fp8}, {}), (std::vector<std::string>{"fp32", "fp8"}));
  EXPECT_EQ(calibration_precisions({fp32}, {"bf16", "fp32", "fp8"}),
            (std::vector<std::string>{"fp32", "bf16", "fp8"}));
  EXPECT_THROW(calibration_precisions({fp32}, {"fp16"}), std::invalid_argument);
}

TEST(Calibration, PlanCoversEveryGemmShapeOfEveryRecipe) {
  const Recipe tiny = recipe("tiny-moe.yaml");
  const Recipe bench = recipe("bench-moe.yaml", {"precision.compute=bf16"});
  const std::vector<std::string> precisions = calibration_precisions({tiny, bench}, {});
  const CalibrationPlan plan = plan_calibration({tiny, bench}, precisions, {64, 96});
  ASSERT_EQ(plan.precisions, (std::vector<std::string>{"fp32", "bf16"}));
  std::vector<GemmRequest> block, fp32_only;  // as bf16 requests
  for (const Recipe* r : {&tiny, &bench}) {
    for (const trainer::GemmShape& s :
         trainer::gemm_shapes(r->model, micro_batch_tokens(*r))) {
      EXPECT_TRUE(has(plan, {"fp32", s.layout, s.m, s.n, s.k}))
          << r->source << " " << s.layout << " " << s.m << "x" << s.n << "x" << s.k;
      (s.block_precision ? block : fp32_only).push_back({"bf16", s.layout, s.m, s.n, s.k});
    }
  }
  // Maps that run at the block precision are measured at bf16 too; the others (the head, the
  // router's gate) only at fp32, unless a block map has the same shape.
  EXPECT_FALSE(block.empty());
  for (const GemmRequest& g : block) EXPECT_TRUE(has(plan, g)) << g.m << "x" << g.n << "x" << g.k;
  size_t fp32_only_shapes = 0;
  for (const GemmRequest& g : fp32_only) {
    if (std::find(block.begin(), block.end(), g) != block.end()) continue;
    EXPECT_FALSE(has(plan, g)) << g.layout << " " << g.m << "x" << g.n << "x" << g.k;
    ++fp32_only_shapes;
  }
  EXPECT_GT(fp32_only_shapes, 0u);  // bench-moe's router gate (n = 8 experts)
  // The routed experts run at the rows one expert gets: tokens x top_k / n_experts.
  const int64_t expert_rows = micro_batch_tokens(bench) * bench.model.top_k / bench.model.n_experts;
  EXPECT_TRUE(std::any_of(plan.gemms.begin(), plan.gemms.end(), [&](const GemmRequest& g) {
    return g.layout == "nt" && g.m == expert_rows && g.k == bench.model.dim;
  }));
  // The squares at every precision, for the peaks.
  for (const char* p : {"fp32", "bf16", "fp8"}) {
    EXPECT_TRUE(has(plan, {p, "nt", 64, 64, 64})) << p;
    EXPECT_TRUE(has(plan, {p, "nt", 96, 96, 96})) << p;
  }
  // Distinct requests only.
  for (size_t i = 0; i < plan.gemms.size(); ++i) {
    for (size_t j = i + 1; j < plan.gemms.size(); ++j) EXPECT_FALSE(plan.gemms[i] == plan.gemms[j]);
  }
}

TEST(Calibration, AttentionCoresAtTheRecipesShapes) {
  const Recipe bench = recipe("bench-moe.yaml");  // mha, 8 heads of 32, seq_len 256
  const Recipe v3 = recipe("deepseek-v3-tiny.yaml");
  const CalibrationPlan plan = plan_calibration({bench, v3}, {"fp32"}, {});
  ASSERT_EQ(plan.attention.size(), 2u);
  EXPECT_EQ(plan.attention[0], (AttentionRequest{8, 256, 8, 32, 32}));
  const AttentionRequest& mla = plan.attention[1];
  EXPECT_EQ(mla.seq_len, v3.train.seq_len);
  EXPECT_EQ(mla.heads, v3.model.n_heads);
  EXPECT_EQ(mla.qk_dim, v3.model.qk_nope_head_dim + v3.model.qk_rope_head_dim);
  EXPECT_EQ(mla.v_dim, v3.model.v_head_dim);
  // FLOPs as trainer/flop_count.h counts them.
  const AttentionRequest& a = plan.attention[0];
  EXPECT_DOUBLE_EQ(a.forward_flops(), 8.0 * 256 * 2 * 8 * (32 + 32) * 257 / 2.0);
  EXPECT_DOUBLE_EQ(a.backward_flops(), 2 * a.forward_flops());
}

// A layout splits the global batch over dp replicas and micro-batches: calibrating for them
// measures the GEMMs at each of those micro-batches (the planner then finds each layout's own).
TEST(Calibration, LayoutsMicroBatchesAreMeasuredToo) {
  const Recipe bench = recipe("bench-moe.yaml");  // global_batch 8, seq_len 256, dp 1, 1 mb
  EXPECT_EQ(layout_micro_batch_rows(bench, 0), (std::vector<int64_t>{8}));  // its own only
  EXPECT_EQ(layout_micro_batch_rows(bench, 1), (std::vector<int64_t>{8, 4, 2}));
  EXPECT_EQ(layout_micro_batch_rows(bench, 2), (std::vector<int64_t>{8, 4, 2, 1}));
  EXPECT_EQ(layout_micro_batch_rows(bench, 64), (std::vector<int64_t>{8, 4, 2, 1}));
  const Recipe six = recipe("bench-moe.yaml", {"train.global_batch=6", "parallel.dp=3"});
  EXPECT_EQ(layout_micro_batch_rows(six, 2), (std::vector<int64_t>{6, 3, 2}));  // own: 2
  const CalibrationPlan own = plan_calibration({bench}, {"fp32"}, {});
  const CalibrationPlan layouts = plan_calibration({bench}, {"fp32"}, {}, 2);
  auto has_m = [](const CalibrationPlan& p, int64_t m) {
    return std::any_of(p.gemms.begin(), p.gemms.end(),
                       [&](const GemmRequest& g) { return g.layout == "nt" && g.m == m; });
  };
  EXPECT_TRUE(has_m(own, 2048));
  EXPECT_FALSE(has_m(own, 256));
  for (int64_t tokens : {2048, 1024, 512, 256}) EXPECT_TRUE(has_m(layouts, tokens)) << tokens;
  EXPECT_TRUE(has_m(layouts, 256 * 2 / 8));  // one rank's rows for one expert at 1 x 256 tokens
}

TEST(Calibration, AttentionShrinksBatchThenHeadsToFitTheBudget) {
  // bench-moe: batch 8 x heads 8, each (8 x 32 + 2) x 256 floats of buffers.
  const Recipe bench = recipe("bench-moe.yaml");
  const int64_t per_head = (8 * 32 + 2) * 256 * 4;
  EXPECT_EQ(plan_calibration({bench}, {"fp32"}, {}, 0, 64 * per_head).attention[0].batch, 8);
  const AttentionRequest small =
      plan_calibration({bench}, {"fp32"}, {}, 0, 4 * per_head).attention[0];
  EXPECT_EQ(small.batch, 1);
  EXPECT_EQ(small.heads, 4);
}

TEST(Calibration, GroupSizesAndStreamArrays) {
  EXPECT_TRUE(all_to_all_group_sizes(1).empty());
  EXPECT_EQ(all_to_all_group_sizes(2), (std::vector<int>{2}));
  EXPECT_EQ(all_to_all_group_sizes(6), (std::vector<int>{2, 4}));
  EXPECT_EQ(all_to_all_group_sizes(8), (std::vector<int>{2, 4, 8}));
  constexpr int64_t MiB = 1 << 20;
  // 3 arrays x 2 ranks hold >= 4 x a 96 MiB cache.
  EXPECT_EQ(stream_array_bytes(96 * MiB, 2, 16 * MiB, 1024 * MiB), 64 * MiB);
  EXPECT_EQ(stream_array_bytes(0, 2, 16 * MiB, 1024 * MiB), 16 * MiB);     // at least min
  EXPECT_EQ(stream_array_bytes(4096 * MiB, 1, 16 * MiB, 512 * MiB), 512 * MiB);  // at most max
}

TEST(Calibration, MachineFacts) {
  EXPECT_FALSE(cpu_model_name().empty());
  EXPECT_GE(online_cpus(), 1);
  EXPECT_GT(total_memory_gib(), 0.0);
  EXPECT_GE(last_level_cache_bytes(), 0);
}

// A measurement reports its slowest rank's seconds; ranks that sit out do not count.
TEST(Calibration, SlowestRankSetsTheFigure) {
  std::mutex mu;
  std::vector<double> seen(3);
  parallel::run_fake_ranks(3, [&](parallel::Comm& world) {
    const int r = world.rank();
    // rank 1 is the slowest taking part; rank 2 sits out with a larger value
    const double s = slowest_over_ranks(world, r == 2 ? 9.0 : 1.0 + 2.0 * r, r != 2);
    std::lock_guard<std::mutex> lock(mu);
    seen[static_cast<size_t>(r)] = s;
  });
  EXPECT_EQ(seen, (std::vector<double>{3.0, 3.0, 3.0}));
  parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
    EXPECT_EQ(slowest_over_ranks(world, 5.0, false), 0.0);
  });
}

// The collectives on two fake ranks (threads): every result positive and the same on both.
TEST(Calibration, MeasurementsAreCollective) {
  const TimingPolicy timing{0.001, 2};
  std::mutex mu;
  std::vector<std::vector<double>> results(2);
  parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
    kernels::CpuBackend backend;
    std::vector<double> r;
    for (const char* layout : {"nt", "nn", "tn"}) {
      r.push_back(measure_gemm_tflops(backend, world, {"fp32", layout, 32, 48, 64}, timing));
    }
    r.push_back(measure_gemm_tflops(backend, world, {"fp8", "nt", 32, 128, 128}, timing));
    const AttentionTflops a =
        measure_attention_tflops(backend, world, {2, 16, 2, 8, 8}, timing);
    r.push_back(a.forward);
    r.push_back(a.backward);
    r.push_back(measure_memory_gbs(world, 1 << 20, timing));
    r.push_back(measure_ping_pong_s(world, 8, timing));
    const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, 2);
    r.push_back(measure_all_to_all_gbs(world, *group, 2, 4096, timing));
    for (ZeroCollective kind : {ZeroCollective::kReduceScatter, ZeroCollective::kAllGather}) {
      r.push_back(measure_zero_collective_gbs(world, *group, 2, kind, 4096, timing));
    }
    std::lock_guard<std::mutex> lock(mu);
    results[static_cast<size_t>(world.rank())] = r;
  });
  ASSERT_EQ(results[0].size(), 11u);
  for (size_t i = 0; i < results[0].size(); ++i) {
    EXPECT_GT(results[0][i], 0.0) << "measurement " << i;
    EXPECT_EQ(results[0][i], results[1][i]) << "measurement " << i;
  }
}

// A collective: the same figure on every rank, finite (its sign is the machine's: noise can
// make it slightly negative); refuses a group below 2, no phase or no iterations.
TEST(Calibration, SyncLossIsCollective) {
  std::mutex mu;
  std::vector<double> loss(2);
  parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
    kernels::CpuBackend backend;
    const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, 2);
    const double l = measure_sync_loss_s(backend, world, *group, 2, 0.001, 3);
    std::lock_guard<std::mutex> lock(mu);
    loss[static_cast<size_t>(world.rank())] = l;
  });
  EXPECT_TRUE(std::isfinite(loss[0]));
  EXPECT_EQ(loss[0], loss[1]);
  for (auto [g, phase, iterations] : {std::tuple{1, 0.001, 3}, std::tuple{2, 0.0, 3},
                                      std::tuple{2, 0.001, 0}}) {
    EXPECT_THROW(parallel::run_fake_ranks(2,
                                          [&](parallel::Comm& world) {
                                            kernels::CpuBackend backend;
                                            measure_sync_loss_s(backend, world, world, g, phase,
                                                                iterations);
                                          }),
                 std::invalid_argument)
        << g << " " << phase << " " << iterations;
  }
}

TEST(Calibration, AllToAllRanksOfASmallerLastGroupSitOut) {
  std::mutex mu;
  std::vector<double> gbs(3);
  parallel::run_fake_ranks(3, [&](parallel::Comm& world) {
    const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, 2);
    EXPECT_EQ(group->size(), world.rank() < 2 ? 2 : 1);
    const double g = measure_all_to_all_gbs(world, *group, 2, 1024, {0.001, 2});
    std::lock_guard<std::mutex> lock(mu);
    gbs[static_cast<size_t>(world.rank())] = g;
  });
  EXPECT_GT(gbs[0], 0.0);
  EXPECT_EQ(gbs[0], gbs[2]);
  EXPECT_THROW(
      parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
        const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, 2);
        measure_all_to_all_gbs(world, *group, 2, 1004, {0.001, 1});  // not a multiple of 8
      }),
      std::invalid_argument);
  EXPECT_THROW(
      parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
        const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, 2);
        measure_zero_collective_gbs(world, *group, 2, ZeroCollective::kAllGather, 1004,
                                    {0.001, 1});
      }),
      std::invalid_argument);
}

}  // namespace
}  // namespace tessera::cluster
