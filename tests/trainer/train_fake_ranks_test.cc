// The whole training step without mpirun: train() on 4 ranks that are threads of this process
// (the fake communicator), pp 2 x dp 2 with the experts split over ep 2 and 2 micro-batches, must
// log the same losses and gradient norms as train() on 1 rank, to 1e-8 relative (the layout
// equivalence the mpirun test checks, here at unit-test cost). Checkpoints need MPI-IO, so these
// runs save none (checkpoint.final false).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "data/prepare_synthetic.h"
#include "parallel/fake_comm.h"
#include "trainer/memory_plan.h"
#include "trainer/recipe.h"
#include "trainer/stop_signal.h"
#include "trainer/trainer.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;

struct Step {
  double loss = 0, grad_norm = 0;
};

std::vector<Step> Metrics(const fs::path& run_dir) {
  std::vector<Step> steps;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto number = [&](const std::string& key) {
      const size_t at = line.find("\"" + key + "\":");
      return at == std::string::npos ? NAN : std::stod(line.substr(at + key.size() + 3));
    };
    steps.push_back({number("loss"), number("grad_norm")});
  }
  return steps;
}

std::string LayoutRecipe() {  // beside this file
  return (fs::path(__FILE__).parent_path() / "layout_recipe.yaml").string();
}

class TrainOnFakeRanks : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs this file's tests as separate processes, in parallel.
    root_ = fs::path(::testing::TempDir()) /
            ("train_fake_ranks_" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    data::PrepareSyntheticOptions o;
    o.chain.vocab = 64;
    o.chain.order = 1;
    o.chain.seed = 3;
    o.tokens = 20000;
    o.out_dir = (root_ / "data").string();
    data::prepare_synthetic(o);
  }
  void TearDown() override { fs::remove_all(root_); }

  // train() of tests/trainer/layout_recipe.yaml on `world` fake ranks.
  std::vector<Step> Train(int world, const std::vector<std::string>& layout) {
    const fs::path run = root_ / ("run-" + std::to_string(world));
    std::vector<std::string> sets = {"data.path=" + (root_ / "data").string(),
                                     "run.dir=" + run.string(), "train.steps=3",
                                     "train.eval_every=0", "checkpoint.every_steps=0",
                                     "checkpoint.final=false"};
    sets.insert(sets.end(), layout.begin(), layout.end());
    const Recipe recipe =
        load_recipe(LayoutRecipe(), sets);
    const StopSignal stop_signal;  // one per process, shared by the rank threads
    TrainOptions options;
    options.stop_signal = &stop_signal;
    std::mutex mu;
    std::string errors;
    parallel::run_fake_ranks(world, [&](parallel::Comm& comm) {
      std::ostringstream out;
      try {
        train(recipe, comm, out, options);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        errors += "rank " + std::to_string(comm.rank()) + ": " + e.what() + "\n";
        throw;
      }
    });
    EXPECT_EQ(errors, "");
    EXPECT_TRUE(fs::exists(run / "DONE"));
    EXPECT_FALSE(fs::exists(run / "checkpoints" / "latest"));
    return Metrics(run);
  }

  fs::path root_;
};

TEST_F(TrainOnFakeRanks, PipelineExpertAndDataParallelEqualOneRank) {
  const std::vector<Step> one = Train(1, {"parallel.micro_batches=4"});
  const std::vector<Step> four =
      Train(4, {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "parallel.micro_batches=2",
                "parallel.schedule=1f1b"});
  ASSERT_EQ(one.size(), 3u);
  ASSERT_EQ(four.size(), one.size());
  // The layouts add the same fp32 gradients in other orders (two micro-batches per rank, then
  // the all-reduce), and AdamW turns those last-bit differences of near-zero gradients into
  // parameter differences: from step 2 the grad norms agree to a few fp32 roundings (1e-7), not
  // to the 1e-8 that step 1 happens to meet.
  for (size_t s = 0; s < one.size(); ++s) {
    EXPECT_NEAR(four[s].loss, one[s].loss, 1e-8 * std::abs(one[s].loss)) << "step " << s + 1;
    EXPECT_NEAR(four[s].grad_norm, one[s].grad_norm, 1e-7 * std::abs(one[s].grad_norm))
        << "step " << s + 1;
  }
  EXPECT_GT(one[0].loss, one[2].loss);  // it trains
}

TEST_F(TrainOnFakeRanks, CheckpointsWithoutMpiAreAClearError) {
  const Recipe recipe = load_recipe(
      LayoutRecipe(),
      {"data.path=" + (root_ / "data").string(), "run.dir=" + (root_ / "ckpt").string()});
  std::string error;
  parallel::run_fake_ranks(1, [&](parallel::Comm& comm) {
    std::ostringstream out;
    try {
      train(recipe, comm, out, {});
    } catch (const std::logic_error& e) {
      error = e.what();
    }
  });
  EXPECT_NE(error.find("checkpoint.final"), std::string::npos) << error;
}

// device_peak_mib is the largest peak of the ranks' backend allocations: the memory plan
// (--dry-run, `tessera plan`) predicts exactly those, per rank, for a pipeline with experts.
TEST_F(TrainOnFakeRanks, DevicePeakIsWhatTheMemoryPlanSays) {
  const Recipe recipe = load_recipe(
      LayoutRecipe(),
      {"data.path=" + (root_ / "data").string(), "run.dir=" + (root_ / "peak").string(),
       "train.steps=2", "train.eval_every=0", "checkpoint.every_steps=0",
       "checkpoint.final=false", "parallel.pp=2", "parallel.dp=2", "parallel.ep=2",
       "parallel.micro_batches=2", "parallel.schedule=1f1b"});
  const StopSignal stop_signal;
  TrainOptions options;
  options.stop_signal = &stop_signal;
  std::vector<double> peaks(4, 0.0);
  parallel::run_fake_ranks(4, [&](parallel::Comm& comm) {
    std::ostringstream out;
    Trainer trainer(recipe, comm, out, options);
    while (!trainer.finished()) peaks[comm.rank()] = trainer.Step().device_peak_mib;
    trainer.Finish();
  });
  int64_t planned = 0;
  for (const RankMemory& r : plan_memory(recipe, kernels::Device::kCPU)) {
    planned = std::max(planned, r.total());
  }
  const double planned_mib = static_cast<double>(planned) / (1 << 20);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(peaks[r], peaks[0]) << "rank " << r;  // the maximum over the ranks, on each
  }
  // Within 2%: the plan sizes buffers for the schedule's peak and worst-case routing, which a
  // short run may not reach; a term left out of either would be far more.
  EXPECT_GT(peaks[0], 0.98 * planned_mib);
  EXPECT_LT(peaks[0], 1.02 * planned_mib);
}

// Trainer::Step() returns, by name, what metrics.jsonl holds, the same on every rank.
TEST_F(TrainOnFakeRanks, StepReportsWhatTheMetricsLineSaysOnEveryRank) {
  const fs::path run = root_ / "stepwise";
  const Recipe recipe = load_recipe(
      LayoutRecipe(),
      {"data.path=" + (root_ / "data").string(), "run.dir=" + run.string(), "train.steps=3",
       "train.eval_every=2", "checkpoint.every_steps=0", "checkpoint.final=false",
       "parallel.dp=2", "parallel.ep=2"});
  const StopSignal stop_signal;
  TrainOptions options;
  options.stop_signal = &stop_signal;
  std::vector<std::vector<StepReport>> reports(2);
  std::vector<TrainSummary> summaries(2);
  parallel::run_fake_ranks(2, [&](parallel::Comm& comm) {
    std::ostringstream out;
    Trainer trainer(recipe, comm, out, options);
    EXPECT_EQ(trainer.step(), 0);
    EXPECT_THROW(trainer.Finish(), std::logic_error);  // steps remain
    while (!trainer.finished()) reports[comm.rank()].push_back(trainer.Step());
    EXPECT_THROW(trainer.Step(), std::logic_error);  // past train.steps
    summaries[comm.rank()] = trainer.Finish();
  });
  ASSERT_EQ(reports[0].size(), 3u);
  std::ifstream in(run / "metrics.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    const StepReport& r = reports[0][s];
    EXPECT_EQ(r.step, static_cast<int64_t>(s + 1));
    EXPECT_EQ(metrics_line(r).str(), lines[s]) << "step " << s + 1;
    EXPECT_EQ(r.val_loss.has_value(), s == 1 || s == 2) << "step " << s + 1;  // every 2, last
    EXPECT_GT(r.grad_norm, 0);
    EXPECT_GT(r.lr, 0);
    EXPECT_NEAR(r.loss, r.ce_loss + r.aux_loss, 1e-12 * r.loss);  // no MTP in this recipe
    const StepReport& other = reports[1][s];  // global numbers: identical on rank 1
    EXPECT_EQ(other.loss, r.loss);
    EXPECT_EQ(other.grad_norm, r.grad_norm);
    EXPECT_EQ(other.tokens_seen, r.tokens_seen);
    EXPECT_EQ(other.val_loss, r.val_loss);
    EXPECT_EQ(other.expert_load_max_over_mean, r.expert_load_max_over_mean);
    EXPECT_EQ(other.expert_ep_rank_load_max_over_mean, r.expert_ep_rank_load_max_over_mean);
    // ep 2: the busier EP rank has at least the mean, at most every row
    EXPECT_GE(r.expert_ep_rank_load_max_over_mean, 1.0);
    EXPECT_LE(r.expert_ep_rank_load_max_over_mean, 2.0);
    EXPECT_GT(r.expert_dispatch_bytes, 0);  // ep 2: rows cross ranks both ways
    EXPECT_GT(r.expert_combine_bytes, 0);
    EXPECT_GT(r.expert_grad_bytes, 0);
    EXPECT_EQ(other.expert_dispatch_bytes, r.expert_dispatch_bytes);
  }
  EXPECT_EQ(summaries[0].steps, 3);
  EXPECT_EQ(summaries[0].final_loss, reports[0][2].loss);
  EXPECT_EQ(summaries[0].final_val_loss, *reports[0][2].val_loss);
  EXPECT_EQ(summaries[0].stop_reason, "");
  EXPECT_TRUE(fs::exists(run / "DONE"));
}

// The expert exchanges' bytes in their wire format: bf16 rows are half of fp32's (the routing of
// the first step differs a little between the precisions, hence the band), fp8 rows with their
// per-128 scales about a quarter, while the fp8 combine is bf16 and the backward stays fp32.
TEST_F(TrainOnFakeRanks, ExpertExchangeBytesFollowThePrecision) {
  auto first_step = [&](const std::string& precision) {
    const Recipe recipe = load_recipe(
        LayoutRecipe(), {"data.path=" + (root_ / "data").string(),
                         "run.dir=" + (root_ / ("bytes-" + precision)).string(), "train.steps=1",
                         "checkpoint.every_steps=0", "checkpoint.final=false", "parallel.dp=2",
                         "parallel.ep=2", "model.dim=128", "model.n_heads=2",
                         "precision.compute=" + precision});
    const StopSignal stop_signal;
    TrainOptions options;
    options.stop_signal = &stop_signal;
    StepReport report;
    parallel::run_fake_ranks(2, [&](parallel::Comm& comm) {
      std::ostringstream out;
      Trainer trainer(recipe, comm, out, options);
      const StepReport r = trainer.Step();
      if (comm.rank() == 0) report = r;
      trainer.Finish();
    });
    return report;
  };
  const StepReport fp32 = first_step("fp32"), bf16 = first_step("bf16"), fp8 = first_step("fp8");
  auto ratio = [](int64_t a, int64_t b) { return static_cast<double>(a) / static_cast<double>(b); };
  ASSERT_GT(fp32.expert_dispatch_bytes, 0);
  EXPECT_NEAR(ratio(bf16.expert_dispatch_bytes, fp32.expert_dispatch_bytes), 0.5, 0.1);
  EXPECT_NEAR(ratio(bf16.expert_combine_bytes, fp32.expert_combine_bytes), 0.5, 0.1);
  // fp8 row of 128: 32 words of codes + 1 scale = 33 of fp32's 128 words.
  EXPECT_NEAR(ratio(fp8.expert_dispatch_bytes, fp32.expert_dispatch_bytes), 33.0 / 128, 0.06);
  EXPECT_NEAR(ratio(fp8.expert_combine_bytes, fp32.expert_combine_bytes), 0.5, 0.1);
  // The backward sends the forward's rows back the other way (flat dispatch): output gradients
  // as the dispatch, input gradients as the combine, except bf16's in fp32 (moe_block.h), exactly.
  EXPECT_EQ(fp32.expert_grad_bytes, fp32.expert_dispatch_bytes + fp32.expert_combine_bytes);
  EXPECT_EQ(bf16.expert_grad_bytes, bf16.expert_dispatch_bytes + 2 * bf16.expert_combine_bytes);
  EXPECT_EQ(fp8.expert_grad_bytes, fp8.expert_dispatch_bytes + fp8.expert_combine_bytes);
  // When out and back carry similar rows: bf16 half 1/2, half 1; fp8 half fp8 (33/128), half
  // bf16 (1/2).
  EXPECT_NEAR(ratio(bf16.expert_grad_bytes, fp32.expert_grad_bytes), (0.5 + 1) / 2, 0.06);
  EXPECT_NEAR(ratio(fp8.expert_grad_bytes, fp32.expert_grad_bytes), (33.0 / 128 + 0.5) / 2, 0.06);
}

// A step that throws leaves the trainer spent: no further step, no Finish, no DONE.
TEST_F(TrainOnFakeRanks, AFailedStepIsFinal) {
  const fs::path run = root_ / "diverges";
  const Recipe recipe = load_recipe(
      LayoutRecipe(),
      {"data.path=" + (root_ / "data").string(), "run.dir=" + run.string(), "train.steps=5",
       "train.eval_every=0", "checkpoint.every_steps=0", "checkpoint.final=false",
       "optimizer.lr=1e30", "optimizer.grad_clip=0", "schedule.warmup_steps=0"});
  const StopSignal stop_signal;
  TrainOptions options;
  options.stop_signal = &stop_signal;
  parallel::run_fake_ranks(1, [&](parallel::Comm& comm) {
    std::ostringstream out;
    Trainer trainer(recipe, comm, out, options);
    std::string error;
    try {
      while (!trainer.finished()) trainer.Step();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    EXPECT_NE(error.find("loss is not finite at step"), std::string::npos) << error;
    EXPECT_LT(trainer.step(), 5);
    EXPECT_THROW(trainer.Step(), std::logic_error);
    EXPECT_THROW(trainer.Finish(), std::logic_error);
  });
  EXPECT_FALSE(fs::exists(run / "DONE"));
}

}  // namespace
}  // namespace tessera::trainer
