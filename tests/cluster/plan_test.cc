// The planner: the cluster file's loader, and predictions checked against sums written here from
// the same pricing rules (cluster/plan.h) on clusters whose numbers make the arithmetic plain.
#include "cluster/plan.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "cluster/plan_trace.h"
#include "tests/recipes_dir.h"
#include "trainer/flop_count.h"
#include "trainer/memory_plan.h"
#include "trainer/model.h"
#include "trainer/parallel_layout.h"

namespace tessera::cluster {
namespace {

namespace fs = std::filesystem;

using test_support::recipes_dir;

// One file per process: ctest runs this file's tests as parallel processes, and one rewriting a
// shared name while another reads it made the reader see a truncated file.
std::string write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() /
                     ("tessera_plan_test_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(p) << text;
  return p.string();
}

std::string load_error(const std::string& text) {
  try {
    load_cluster_spec(write_temp("bad.yaml", text));
  } catch (const ClusterSpecError& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kSmall =
    "name: test\nnodes: 1\ngpus_per_node: 8\n"
    "device: {name: dev, kind: cpu, peak_tflops: {fp32: 1, bf16: 2, fp8: 4}, memory_gib: 16,\n"
    "         memory_gbs: 1.0e+9}\n"
    "network: {intra_node_gbs: 1.0e+9, inter_node_gbs: 1.0e+9, intra_node_latency_us: 0,\n"
    "          inter_node_latency_us: 0}\n";

TEST(ClusterSpec, ShippedClustersLoad) {
  for (const char* name : {"h800.yaml", "h100.yaml"}) {
    const ClusterSpec c = load_cluster_spec((recipes_dir() / "clusters" / name).string());
    EXPECT_EQ(c.gpus_per_node, 8);
    EXPECT_DOUBLE_EQ(c.device.peak_tflops("bf16"), 989);
    EXPECT_DOUBLE_EQ(c.device.peak_tflops("fp8"), 1979);
    EXPECT_FALSE(c.device.gemm.empty());
  }
  EXPECT_EQ(load_cluster_spec((recipes_dir() / "clusters/h800.yaml").string()).devices(),
            2048);
}

TEST(ClusterSpec, ErrorsNameTheKey) {
  EXPECT_NE(load_error("name: x\nnodes: 1\n").find("gpus_per_node: required"), std::string::npos);
  std::string bad = kSmall;
  bad.replace(bad.find("memory_gib: 16"), 14, "memory_gib: -1");
  EXPECT_NE(load_error(bad).find("device.memory_gib: must be a finite number > 0, got -1"),
            std::string::npos)
      << load_error(bad);
  bad = std::string(kSmall) + "colour: blue\n";
  EXPECT_NE(load_error(bad).find("colour: unknown key"), std::string::npos);
  bad = kSmall;
  bad.replace(bad.find("kind: cpu"), 9, "kind: tpu");
  EXPECT_NE(load_error(bad).find("device.kind: must be cpu | gpu, got 'tpu'"), std::string::npos)
      << load_error(bad);
  bad = std::string(kSmall);
  bad.replace(bad.find("memory_gib"), 0, "gemm: [{precision: fp16, m: 1, n: 1, k: 1, tflops: 1}], ");
  EXPECT_NE(load_error(bad).find("device.gemm[0].precision: must be bf16 | fp32 | fp8"),
            std::string::npos)
      << load_error(bad);
  EXPECT_NE(load_error("a: [").find("YAML syntax error"), std::string::npos);
}

TEST(ClusterSpec, WrittenFileLoadsBackTheSame) {
  ClusterSpec c = load_cluster_spec((recipes_dir() / "clusters/h800.yaml").string());
  c.device.attention.push_back({256, 32, 0.5, 0.25});
  c.network.all_to_all.push_back({4, 1 << 20, 2.5});
  c.network.reduce_scatter.push_back({2, 1 << 24, 1.5});
  c.network.all_gather.push_back({4, 1 << 22, 3.25});
  c.network.sync_loss.push_back({4, 0.008, 0.0015});
  c.network.sync_loss.push_back({2, 0.002, 0.0});
  const ClusterSpec back = load_cluster_spec(write_temp("back.yaml", cluster_spec_to_yaml(c, {"x"})));
  EXPECT_EQ(back.name, c.name);
  EXPECT_EQ(back.device.name, c.device.name);
  ASSERT_EQ(back.device.gemm.size(), c.device.gemm.size());
  EXPECT_EQ(back.device.gemm[3].n, c.device.gemm[3].n);
  EXPECT_DOUBLE_EQ(back.device.gemm[3].tflops, c.device.gemm[3].tflops);
  EXPECT_DOUBLE_EQ(back.device.attention[0].backward_tflops, 0.25);
  EXPECT_EQ(back.network.all_to_all[0].bytes_per_rank, 1 << 20);
  ASSERT_EQ(back.network.reduce_scatter.size(), 1u);
  EXPECT_EQ(back.network.reduce_scatter[0].bytes, 1 << 24);
  EXPECT_DOUBLE_EQ(back.network.reduce_scatter[0].gbs, 1.5);
  ASSERT_EQ(back.network.all_gather.size(), 1u);
  EXPECT_EQ(back.network.all_gather[0].ranks, 4);
  EXPECT_DOUBLE_EQ(back.network.all_gather[0].gbs, 3.25);
  EXPECT_DOUBLE_EQ(back.network.inter_node_gbs, 50);
  ASSERT_EQ(back.network.sync_loss.size(), 2u);
  EXPECT_EQ(back.network.sync_loss[0].ranks, 4);
  EXPECT_DOUBLE_EQ(back.network.sync_loss[0].phase_s, 0.008);
  EXPECT_DOUBLE_EQ(back.network.sync_loss[0].loss_s, 0.0015);
  EXPECT_DOUBLE_EQ(back.network.sync_loss[1].loss_s, 0.0);
}

// Linear in the phase between measured phases (from 0 at no compute), the longest phase's loss
// beyond it, for the group size measured; another group size, or nothing measured: no loss.
TEST(ClusterSpec, SyncLossInterpolatesTheMeasuredPhases) {
  NetworkSpec n;
  bool measured = true;
  EXPECT_EQ(sync_loss_s(n, 4, 0.01, &measured), 0.0);
  EXPECT_FALSE(measured);
  n.sync_loss = {{4, 0.008, 0.004}, {2, 0.002, 0.001}, {4, 0.002, 0.002}, {2, 0.008, 0.002}};
  EXPECT_DOUBLE_EQ(sync_loss_s(n, 4, 0.001, &measured), 0.001);  // half of the first
  EXPECT_TRUE(measured);
  EXPECT_DOUBLE_EQ(sync_loss_s(n, 4, 0.005), 0.003);  // between 2 and 8 ms
  EXPECT_DOUBLE_EQ(sync_loss_s(n, 4, 0.1), 0.004);    // beyond the longest
  EXPECT_DOUBLE_EQ(sync_loss_s(n, 2, 0.008), 0.002);
  EXPECT_EQ(sync_loss_s(n, 8, 0.008, &measured), 0.0);
  EXPECT_FALSE(measured);
  EXPECT_EQ(sync_loss_s(n, 4, 0.0), 0.0);
}

trainer::Recipe tiny(const std::vector<std::string>& overrides) {
  return trainer::load_recipe((recipes_dir() / "tiny-moe.yaml").string(), overrides);
}

// One process, one micro-batch: the step is the chunk's forward + backward + optimizer, and the
// forward is the model's GEMM FLOPs at the fp32 peak (memory and links made ~free).
TEST(Plan, OneProcessIsTheSumOfItsGemmsAtThePeak) {
  const ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r =
      tiny({"parallel.pp=1", "parallel.dp=1", "parallel.ep=1", "parallel.micro_batches=1",
            "parallel.schedule=gpipe"});
  const Plan p = make_plan(r, c);
  ASSERT_EQ(p.chunks.size(), 1u);
  const double tokens = static_cast<double>(r.train.global_batch * r.train.seq_len);
  const trainer::FlopsPerToken f = trainer::flops_per_token(r.model, r.train.seq_len);
  // Attention runs at its GEMM rate, the peak here too; element-wise traffic is ~0 at 1e9 GB/s.
  EXPECT_NEAR(p.chunks[0].forward, f.forward * tokens / 1e12, 1e-6 * p.chunks[0].forward);
  EXPECT_NEAR(p.chunks[0].backward_input + p.chunks[0].backward_weight,
              2 * f.forward * tokens / 1e12, 1e-6 * p.chunks[0].forward);
  EXPECT_DOUBLE_EQ(p.pipeline_s, p.chunks[0].forward + p.chunks[0].backward_input +
                                     p.chunks[0].backward_weight);
  EXPECT_DOUBLE_EQ(p.bubble_fraction, 0.0);
  EXPECT_DOUBLE_EQ(p.zero_s, 0.0);
  EXPECT_NEAR(p.mfu, f.training * tokens / p.step_s / 1e12, 1e-12);
  EXPECT_GT(p.mfu, 0.99);  // all compute, at the peak: only the optimizer's ~0 s beside it
  EXPECT_FALSE(p.notes.empty());  // "fp32 GEMMs at the device's peak ..."
  // Memory is the trainer's own plan.
  const auto memory = trainer::plan_memory(r, kernels::Device::kCPU);
  EXPECT_DOUBLE_EQ(p.peak_memory_gib, memory[0].total() / 1024.0 / 1024.0 / 1024.0);
  EXPECT_TRUE(p.fits);
}

// Measured GEMM points: the nearest shape's rate prices every GEMM; a precision's peak prices
// nothing once it has points.
TEST(Plan, MeasuredGemmPointsPriceTheGemms) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=1", "parallel.ep=1",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  const Plan at_peak = make_plan(r, c);
  for (const std::string layout : {"nt", "nn", "tn"}) {
    c.device.gemm.push_back({"fp32", layout, 1, 1, 1, 0.5});  // half the peak, whatever the shape
  }
  c.device.attention.push_back({r.train.seq_len, 16, 0.5, 0.5});
  const Plan half = make_plan(r, c);
  EXPECT_NEAR(half.chunks[0].forward, 2 * at_peak.chunks[0].forward, 1e-6 * half.chunks[0].forward);
  EXPECT_NEAR(half.mfu, at_peak.mfu / 2, 1e-3);
  for (const std::string& n : half.notes) EXPECT_EQ(n.find("fp32 GEMMs at the device's peak"), std::string::npos) << n;
}

// ZeRO inside a node at the measured reduce-scatter / all-gather rates: the last gradient bucket's
// reduce-scatter and the whole parameter all-gather, bytes / gbs each, for the dense and the
// expert regions (experts replicated over dp here: one expert-data group of 2).
TEST(Plan, MeasuredCollectivesPriceZero) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=1",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe",
                                  "parallel.grad_bucket_mb=1"});
  EXPECT_LT(make_plan(r, c).zero_s, 1e-6);  // the ring formula at 1e9 GB/s
  c.network.reduce_scatter = {{2, 1 << 20, 0.5}, {8, 1 << 20, 1e9}};
  c.network.all_gather = {{2, 1 << 30, 0.25}};
  const Plan p = make_plan(r, c);
  const std::unique_ptr<trainer::Model> model =
      trainer::Model::Describe(r.model, trainer::recipe_model_part(r, 0, 1, 0));
  double expected = 0.0;
  for (auto region : {trainer::ParamRegion::kDense, trainer::ParamRegion::kExpert}) {
    const double bytes = 4.0 * static_cast<double>(model->params().padded_region_numel(region, 2));
    if (bytes == 0) continue;
    expected += std::min(bytes, double{1 << 20}) / 0.5e9 + bytes / 0.25e9;
  }
  EXPECT_GT(expected, 0.0);
  EXPECT_NEAR(p.zero_s, expected, 1e-9 * expected);
  // Across nodes the measured (one-node) points do not apply: the ring formula again.
  ClusterSpec two_nodes = c;
  two_nodes.nodes = 2;
  two_nodes.gpus_per_node = 1;
  EXPECT_LT(make_plan(r, two_nodes).zero_s, 1e-6);
}

// Under EP the grouped op runs one GEMM per (sending rank, expert) row segment: those are the
// shapes priced. Slow points at the merged shapes (all of an expert's rows in one GEMM) change
// nothing; priced merged, the plan would take their rate.
TEST(Plan, RoutedExpertsArePricedPerRowSegment) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=2",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  const int64_t tokens = r.train.global_batch / 2 * r.train.seq_len;
  const int64_t segment = tokens * r.model.top_k / r.model.n_experts;
  const std::vector<trainer::GemmShape> shapes = trainer::gemm_shapes(r.model, tokens);
  for (const trainer::GemmShape& s : shapes) {
    c.device.gemm.push_back({"fp32", s.layout, s.m, s.n, s.k, 0.5});
  }
  c.device.attention.push_back({r.train.seq_len, r.model.dim / r.model.n_heads, 0.5, 0.5});
  const Plan per_segment = make_plan(r, c);
  ClusterSpec slow_merged = c;
  int merged = 0;
  for (const trainer::GemmShape& s : shapes) {
    GemmPoint p{"fp32", s.layout, s.m, s.n, s.k, 1e-6};
    int64_t& rows = s.layout == "tn" ? p.k : p.m;
    if (rows != segment) continue;
    rows *= r.parallel.ep;
    slow_merged.device.gemm.push_back(p);
    ++merged;
  }
  EXPECT_EQ(merged, 6);  // the routed experts' two shapes (w1 = w3, w2), nt, nn and tn each
  EXPECT_DOUBLE_EQ(make_plan(r, slow_merged).step_s, per_segment.step_s);
}

// More ranks x threads on a CPU node than it has cores: the plan names the time-sharing; with
// enough cores, or without the count, it says nothing of it.
TEST(Plan, OversubscribedCpuNodesAreNamed) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=4", "parallel.ep=1",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe",
                                  "run.cpu_threads=1"});
  auto names_it = [&](const ClusterSpec& spec) {
    const Plan p = make_plan(r, spec);
    return std::any_of(p.notes.begin(), p.notes.end(), [](const std::string& n) {
      return n.find("time-share the cores") != std::string::npos;
    });
  };
  EXPECT_FALSE(names_it(c));  // node_cores not given
  c.device.node_cores = 4;
  EXPECT_FALSE(names_it(c));
  c.device.node_cores = 2;
  EXPECT_TRUE(names_it(c));
  const ClusterSpec back =
      load_cluster_spec(write_temp("cores.yaml", cluster_spec_to_yaml(c, {})));
  EXPECT_EQ(back.device.node_cores, 2);
}

// Ranks time-sharing a CPU node's cores: an instruction computing while the other stage idles
// has the cores to itself (parallel/schedule_time_sharing.h). With one micro-batch no two
// instructions overlap, so on 1 core for 2 ranks each takes half its time with a core per rank,
// and its pieces shrink with it in the predicted trace.
TEST(Plan, TimeSharedCoresGoToTheRanksThatCompute) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"model.n_layers=4", "parallel.pp=2", "parallel.dp=1",
                                  "parallel.ep=1", "parallel.micro_batches=1",
                                  "parallel.schedule=gpipe", "run.cpu_threads=1"});
  PlanOptions options;
  options.pieces = true;
  c.device.node_cores = 2;  // a core per rank
  const Plan own = make_plan(r, c, options);
  c.device.node_cores = 1;
  const Plan shared = make_plan(r, c, options);
  int compute = 0;
  double computing = 0;  // with a core per rank
  for (int s = 0; s < 2; ++s) {
    const auto& list = own.schedule_lists.per_stage[static_cast<size_t>(s)];
    for (size_t i = 0; i < list.size(); ++i) {
      if (!parallel::is_compute(list[i].op)) continue;
      ++compute;
      const auto [a, b] = own.run.spans[static_cast<size_t>(s)][i];
      computing += b - a;
      const auto [c0, c1] = shared.run.spans[static_cast<size_t>(s)][i];
      EXPECT_NEAR(c1 - c0, (b - a) / 2, 1e-9 * (b - a)) << "stage " << s << " #" << i;
      ASSERT_FALSE(own.pieces[s][i].empty());
      EXPECT_NEAR(shared.pieces[s][i].back().end, own.pieces[s][i].back().end / 2,
                  1e-9 * (b - a));
    }
  }
  EXPECT_EQ(compute, 4);  // F and BW on each stage
  // The transfers between the stages take as long either way.
  EXPECT_NEAR(own.pipeline_s - shared.pipeline_s, computing / 2, 1e-9 * own.pipeline_s);
}

// The routed experts' pieces of stage 0's step (a plan made with PlanOptions::pieces).
double routed_expert_seconds(const Plan& plan) {
  double seconds = 0.0;
  for (const auto& instruction : plan.pieces.at(0)) {
    for (const PieceSpan& p : instruction) {
      if (p.name == "F experts" || p.name == "B experts backward" ||
          p.name == "W experts weights") {
        seconds += p.end - p.start;
      }
    }
  }
  return seconds;
}

// A layout's routed-expert seconds and step under balanced routing, and how much longer its step
// is when the busiest EP rank holds `imbalance` times the mean rows.
struct ImbalanceCost {
  double experts = 0, balanced_step = 0, extra_step = 0;
};
ImbalanceCost imbalance_cost(const trainer::Recipe& r, const ClusterSpec& c, double imbalance) {
  PlanOptions options;
  options.pieces = true;
  const Plan balanced = make_plan(r, c, options);
  options.expert_imbalance = imbalance;
  return {routed_expert_seconds(balanced), balanced.step_s,
          make_plan(r, c, options).step_s - balanced.step_s};
}

// The EP group waits for its busiest rank: routed experts cost that rank's rows (links free here,
// so the step grows by exactly the extra expert work); at most ep times the mean; nothing with
// one EP rank; below 1 refused.
TEST(Plan, ExpertImbalancePricesTheBusiestEpRank) {
  const ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=2",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  const ImbalanceCost skewed = imbalance_cost(r, c, 1.5);
  EXPECT_GT(skewed.experts, 0.0);
  EXPECT_NEAR(skewed.extra_step, 0.5 * skewed.experts, 1e-9 * skewed.balanced_step);
  PlanOptions options;
  options.pieces = true;
  options.expert_imbalance = 2.0;
  const double all_on_one = make_plan(r, c, options).step_s;
  options.expert_imbalance = 7.0;
  EXPECT_DOUBLE_EQ(make_plan(r, c, options).step_s, all_on_one);
  const trainer::Recipe one_rank = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=1",
                                         "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  EXPECT_DOUBLE_EQ(make_plan(one_rank, c, options).step_s, make_plan(one_rank, c).step_s);
  options.expert_imbalance = 0.9;
  EXPECT_THROW(make_plan(r, c, options), std::invalid_argument);
}

// On time-shared CPU cores the lighter EP ranks lend their cores once done: dp4 ep4, 4 ranks.
// With a core each the busiest rank's 1.75x rows cost 0.75 of the routed experts more; on 2
// cores the three lighter ranks (0.75 of the mean each) finish with it at 0.75, and its last
// 1.0 runs alone at twice the shared speed: 1.25, so 0.25 more.
TEST(Plan, TimeSharedCoresLendTheLighterEpRanksCores) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=4", "parallel.ep=4",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe",
                                  "run.cpu_threads=1"});
  for (const auto& [cores, extra] : {std::pair{4, 0.75}, std::pair{2, 0.25}}) {
    c.device.node_cores = cores;
    const ImbalanceCost skewed = imbalance_cost(r, c, 1.75);
    EXPECT_GT(skewed.experts, 0.0);
    // (the exchanges' rows grow too, on links fast enough to cost ~1e-13 s)
    EXPECT_NEAR(skewed.extra_step, extra * skewed.experts, 1e-6 * skewed.experts)
        << cores << " cores";
  }
}

// A measured synchronisation loss (network.sync_loss) delays every expert exchange that ends a
// phase of compute, and the plan says so; one EP rank has no such exchange.
TEST(Plan, ExpertExchangesWaitTheMeasuredSynchronisationLoss) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=2",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  const trainer::Recipe one_rank = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=1",
                                         "parallel.micro_batches=1", "parallel.schedule=gpipe"});
  const Plan base = make_plan(r, c);
  const double base_one = make_plan(one_rank, c).step_s;
  constexpr double kLoss = 0.01;  // after any phase (the only point is at a tiny phase)
  c.network.sync_loss = {{2, 1e-12, kLoss}};
  const Plan late = make_plan(r, c);
  // The forward's two (the counts after attention and the router, the combine after the
  // experts) and most of the backward's (links free here: part of one hides behind compute).
  EXPECT_GE(late.step_s - base.step_s, 3 * kLoss);
  EXPECT_GE(late.exposed_comm_s - base.exposed_comm_s, 3 * kLoss);
  EXPECT_TRUE(std::any_of(late.notes.begin(), late.notes.end(), [](const std::string& n) {
    return n.find("synchronisation loss") != std::string::npos;
  }));
  EXPECT_FALSE(std::any_of(base.notes.begin(), base.notes.end(), [](const std::string& n) {
    return n.find("synchronisation loss") != std::string::npos;
  }));
  // Without expert exchanges only ZeRO's reduce-scatter waits (once a step).
  EXPECT_NEAR(make_plan(one_rank, c).step_s, base_one + kLoss, 1e-12);
  // Only other group sizes measured: no loss, and a note says so.
  c.network.sync_loss = {{4, 1e-12, kLoss}};
  const Plan other = make_plan(r, c);
  EXPECT_DOUBLE_EQ(other.step_s, base.step_s);
  EXPECT_TRUE(std::any_of(other.notes.begin(), other.notes.end(), [](const std::string& n) {
    return n.find("no synchronisation loss priced for groups of 2") != std::string::npos;
  }));
}

// ZeRO's last reduce-scatter waits the loss of the phase the step ends with: with data
// parallelism alone the whole step's compute, with expert exchanges only what follows the last.
TEST(Plan, ZeroReduceScatterWaitsTheLossOfThePhaseBeforeIt) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const std::vector<std::string> layout = {"parallel.pp=1", "parallel.dp=2",
                                           "parallel.micro_batches=2", "parallel.schedule=1f1b"};
  auto with = [&](const char* ep) {
    std::vector<std::string> sets = layout;
    sets.push_back(ep);
    return tiny(sets);
  };
  const trainer::Recipe dp = with("parallel.ep=1"), ep = with("parallel.ep=2");
  const Plan base = make_plan(dp, c), base_ep = make_plan(ep, c);
  constexpr double kRate = 0.125;  // seconds lost per second of phase, up to 1000 s
  c.network.sync_loss = {{2, 1000.0, 1000.0 * kRate}};
  const Plan late = make_plan(dp, c), late_ep = make_plan(ep, c);
  ASSERT_GT(base.run.busy.at(0), 0.0);
  EXPECT_NEAR(late.zero_s - base.zero_s, kRate * base.run.busy.at(0), 1e-12);
  EXPECT_NEAR(late.step_s - base.step_s, kRate * base.run.busy.at(0), 1e-12);
  EXPECT_TRUE(std::any_of(late.notes.begin(), late.notes.end(), [](const std::string& n) {
    return n.find("ZeRO's last reduce-scatter waits") != std::string::npos;
  }));
  const double ep_loss = late_ep.zero_s - base_ep.zero_s;
  EXPECT_GT(ep_loss, 0.0);
  EXPECT_LT(ep_loss, 0.5 * kRate * base_ep.run.busy.at(0));  // the phase after the last exchange

  // In a pipeline the phase starts at the stage's last receive; its trailing sends are posted,
  // not waited for. The last stage ends with sends: its phase is its compute after its last
  // receive, longer than the first stage's (its last backward after the last gradient arrives).
  c.network.sync_loss.clear();
  const trainer::Recipe pp = tiny({"parallel.pp=2", "parallel.dp=2", "parallel.ep=1",
                                   "parallel.micro_batches=2", "parallel.schedule=gpipe"});
  const Plan base_pp = make_plan(pp, c);
  c.network.sync_loss = {{2, 1000.0, 1000.0 * kRate}};
  const Plan late_pp = make_plan(pp, c);
  double last_stage_phase = 0;
  const auto& list = base_pp.schedule_lists.per_stage.at(1);
  for (size_t i = list.size(); i-- > 0;) {
    if (list[i].op == parallel::Op::kRecvActivation || list[i].op == parallel::Op::kRecvGrad) break;
    if (parallel::is_compute(list[i].op)) {
      last_stage_phase += base_pp.run.spans[1][i].second - base_pp.run.spans[1][i].first;
    }
  }
  ASSERT_EQ(list.back().op, parallel::Op::kSendGrad);
  EXPECT_NEAR(late_pp.zero_s - base_pp.zero_s, kRate * last_stage_phase, 1e-12);
}

// CPU ranks that fill the node's cores copy and sum their exchanges on those cores: a forward
// takes its compute plus every exchange, none hidden; with a core to spare (or the count not
// given) exchanges travel while the rank computes. So do ZeRO's gradient buckets: all of them
// are priced, not just the last.
TEST(Plan, ExchangesOnFullCpuCoresAreNotHidden) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  c.network.intra_node_gbs = 1e-3;  // 1 MB/s: exchanges dominate
  const trainer::Recipe r = tiny({"parallel.pp=1", "parallel.dp=2", "parallel.ep=2",
                                  "parallel.micro_batches=1", "parallel.schedule=gpipe",
                                  "parallel.grad_bucket_mb=0.001", "run.cpu_threads=1"});
  auto forward_span = [&](const Plan& p) {
    const auto& list = p.schedule_lists.per_stage.at(0);
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].op == parallel::Op::kForward) {
        return p.run.spans[0][i].second - p.run.spans[0][i].first;
      }
    }
    ADD_FAILURE() << "no forward";
    return 0.0;
  };
  const Plan spare = make_plan(r, c);  // node_cores not given
  c.device.node_cores = 2;             // 2 ranks x 1 thread
  const Plan full = make_plan(r, c);
  const ChunkCost& f = full.chunks.at(0);
  ASSERT_GT(f.forward_comm, 0.0);
  EXPECT_NEAR(forward_span(full), f.forward + f.forward_comm, 1e-9 * forward_span(full));
  EXPECT_LT(forward_span(spare), f.forward + f.forward_comm);
  EXPECT_GT(full.zero_s, spare.zero_s);  // every bucket's reduce-scatter
  c.device.node_cores = 3;
  EXPECT_DOUBLE_EQ(make_plan(r, c).step_s, spare.step_s);
}

// The predicted trace holds each instruction's pieces as the trainer names them, inside the
// instruction's span, and the expert exchanges on their lane.
TEST(Plan, PredictedTraceShowsThePieces) {
  const ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const trainer::Recipe r = tiny({"model.n_layers=4", "parallel.pp=2", "parallel.dp=2",
                                  "parallel.ep=2", "parallel.micro_batches=4",
                                  "parallel.schedule=dualpipev"});
  EXPECT_TRUE(make_plan(r, c).pieces.empty());
  PlanOptions options;
  options.pieces = true;
  const Plan p = make_plan(r, c, options);
  ASSERT_EQ(p.pieces.size(), 2u);
  std::set<std::string> names;
  for (size_t s = 0; s < p.pieces.size(); ++s) {
    const auto& list = p.schedule_lists.per_stage[s];
    ASSERT_EQ(p.pieces[s].size(), list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const double length = p.run.spans[s][i].second - p.run.spans[s][i].first;
      EXPECT_EQ(p.pieces[s][i].empty(), !parallel::is_compute(list[i].op));
      for (const PieceSpan& piece : p.pieces[s][i]) {
        names.insert(piece.name);
        EXPECT_GE(piece.start, 0.0);
        if (piece.lane == 0) {
          EXPECT_LE(piece.end, length * (1 + 1e-12)) << piece.name;
        }
      }
    }
  }
  for (const char* name : {"F attention", "F experts", "B experts backward", "W experts weights",
                           "F output", "B output", "all_to_all_v"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  const std::string trace = plan_chrome_trace(p);
  EXPECT_NE(trace.find("\"F attention\""), std::string::npos);
  EXPECT_NE(trace.find("\"comm:ep\""), std::string::npos);
}

// Pipeline stages exchange activations over the link; an FB pair overlaps its all-to-alls.
TEST(Plan, PipelineAndOverlap) {
  ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  c.network.intra_node_gbs = 1e-3;  // 1 MB/s: transfers dominate
  const trainer::Recipe r = tiny({"model.n_layers=4", "parallel.pp=2", "parallel.dp=2",
                                  "parallel.ep=2", "parallel.micro_batches=4",
                                  "parallel.schedule=dualpipev"});
  const Plan overlapped = make_plan(r, c);
  const Plan serial = make_plan(tiny({"model.n_layers=4", "parallel.pp=2", "parallel.dp=2", "parallel.ep=2",
                                      "parallel.micro_batches=4", "parallel.schedule=dualpipev",
                                      "parallel.overlap=false"}),
                                c);
  double comm = 0.0;  // layer 0 is dense; the MoE layers' chunks exchange rows
  for (const ChunkCost& chunk : overlapped.chunks) comm += chunk.forward_comm + chunk.backward_comm;
  EXPECT_GT(comm, 0.0);
  EXPECT_LT(overlapped.step_s, serial.step_s);
  EXPECT_LT(overlapped.exposed_comm_s, serial.exposed_comm_s);
  EXPECT_GT(overlapped.bubble_fraction, 0.0);
  EXPECT_EQ(overlapped.world, 4);
  // The step tail: at least the world's three small all-reduces (recursive doubling over 4
  // ranks on one node) and the expert loads' all-reduce; all of it in the step.
  EXPECT_GE(overlapped.step_tail_s, 3 * 2 * 2 * c.network.intra_node_latency_us * 1e-6);
  EXPECT_DOUBLE_EQ(overlapped.step_s, overlapped.pipeline_s + overlapped.zero_s +
                                          overlapped.optimizer_s + overlapped.step_tail_s);
}

// AdamW's memory traffic per shard value: fp32 value r/w and gradient read (12 bytes) plus both
// moments read and written at optimizer.state_dtype's width (16 bytes fp32, 8 bf16).
TEST(Plan, Bf16OptimizerStateMovesFewerBytes) {
  const ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));
  const std::vector<std::string> layout = {"parallel.pp=1", "parallel.dp=1", "parallel.ep=1",
                                           "parallel.micro_batches=1", "parallel.schedule=gpipe"};
  std::vector<std::string> bf16 = layout;
  bf16.push_back("optimizer.state_dtype=bf16");
  const Plan fp32_state = make_plan(tiny(layout), c);
  const Plan bf16_state = make_plan(tiny(bf16), c);
  ASSERT_GT(fp32_state.optimizer_s, 0.0);
  EXPECT_NEAR(bf16_state.optimizer_s / fp32_state.optimizer_s, 20.0 / 28.0, 1e-9);
}

// precision fp8's activation storage (trainer/layers/saved_activation.h) as memory traffic, with
// GEMMs and links made free and memory at 1 GB/s, so the step's difference from bf16 is that
// traffic alone. tiny-moe (dim 64; layer 0 dense, hidden 192; layer 1 MoE, one shared expert and
// top-2 of hidden 64), 1024 tokens. Bytes per token: a kept linear input 5 a value forward and 5
// in the weight-gradient piece; a kept SwiGLU input of hidden F: 5 x 2F forward, 5 x 2F in the
// input-gradient piece, (5 x 2 + 12) F in the weight-gradient piece (dequantise, recompute).
//   layer 0: attention 2 x 5 x 64, FFN input 2 x 5 x 64, SwiGLU (20 + 22) x 192 = 9344
//   layer 1: attention 640, shared SwiGLU 42 x 64, routed 42 x 128 = 8704
TEST(Plan, Fp8PricesItsActivationStorage) {
  const ClusterSpec c = load_cluster_spec(write_temp(
      "slow_memory.yaml",
      "name: test\nnodes: 1\ngpus_per_node: 8\n"
      "device: {name: dev, kind: cpu, peak_tflops: {fp32: 1.0e+12, bf16: 1.0e+12, fp8: 1.0e+12},\n"
      "         memory_gib: 16, memory_gbs: 1.0}\n"
      "network: {intra_node_gbs: 1.0e+12, inter_node_gbs: 1.0e+12, intra_node_latency_us: 0,\n"
      "          inter_node_latency_us: 0}\n"));
  const std::vector<std::string> layout = {"parallel.pp=1", "parallel.dp=1", "parallel.ep=1",
                                           "parallel.micro_batches=1", "parallel.schedule=gpipe"};
  std::vector<std::string> bf16 = layout, fp8 = layout;
  bf16.push_back("precision.compute=bf16");
  fp8.push_back("precision.compute=fp8");
  const Plan a = make_plan(tiny(bf16), c), b = make_plan(tiny(fp8), c);
  EXPECT_NEAR(b.step_s - a.step_s, (9344.0 + 8704.0) * 1024 / 1e9, 1e-9);
}

// Across nodes the plain exchange sends a token's row once per expert, node-aware dispatch once
// per destination node: dp4 ep4 on 2 nodes of 2, top_k 2 and each token's experts on one node
// (n_group 2, topk_group 1), links inside a node free. Per rank 16 x 64 / 4 = 256 tokens, 512
// routed rows of 64 fp32: half of them cross (65536 bytes at 1 MB/s) each way in the plain
// exchange; node-aware sends 256 rows, half of them across.
TEST(Plan, PlainExchangesCrossNodesOncePerExpertNodeAwareOncePerNode) {
  const ClusterSpec c = load_cluster_spec(write_temp(
      "two_nodes.yaml",
      "name: test\nnodes: 2\ngpus_per_node: 2\n"
      "device: {name: dev, kind: cpu, peak_tflops: {fp32: 1.0e+12, bf16: 1.0e+12, fp8: 1.0e+12},\n"
      "         memory_gib: 16, memory_gbs: 1.0e+12}\n"
      "network: {intra_node_gbs: 1.0e+12, inter_node_gbs: 1.0e-3, intra_node_latency_us: 0,\n"
      "          inter_node_latency_us: 0}\n"));
  auto forward_exchanges = [&](const std::string& node_aware) {
    const Plan p = make_plan(
        tiny({"parallel.pp=1", "parallel.dp=4", "parallel.ep=4", "parallel.micro_batches=1",
              "parallel.schedule=gpipe", "model.n_group=2", "model.topk_group=1",
              "parallel.node_aware_dispatch=" + node_aware}),
        c);
    return p.chunks.at(0).forward_comm;
  };
  const double plain = 2 * (512 * 256 * 0.5 / 1e6);  // dispatch and combine, one MoE layer
  EXPECT_NEAR(forward_exchanges("off"), plain, 1e-9);
  EXPECT_NEAR(forward_exchanges("on"), plain / 2, 1e-9);
}

TEST(Plan, RefusesMoreRanksThanDevices) {
  const ClusterSpec c = load_cluster_spec(write_temp("small.yaml", kSmall));  // 8 devices
  try {
    make_plan(tiny({"model.n_layers=4", "parallel.pp=4", "parallel.dp=4", "parallel.ep=4", "parallel.micro_batches=4",
                    "train.global_batch=16"}),
              c);
    FAIL() << "expected ClusterSpecError";
  } catch (const ClusterSpecError& e) {
    EXPECT_NE(std::string(e.what()).find("16 ranks"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera::cluster
