#include "trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <ostream>
#include <stdexcept>
#include <vector>

#include "data/loader.h"
#include "kernels/gemm.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/rank_log.h"

namespace tessera::trainer {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, a);
  return buf;
}

// Every rank sees the same recipe and world size, so every rank throws the same error.
void check_layout(const Recipe& recipe, int world_size) {
  const ParallelConfig& p = recipe.parallel;
  if (p.pp * p.dp != world_size) {
    throw RecipeError(recipe.source + ": parallel.pp (" + std::to_string(p.pp) + ") x parallel.dp (" +
                      std::to_string(p.dp) + ") must equal the number of processes (" +
                      std::to_string(world_size) + ")");
  }
  if (p.pp > 1) {
    throw RecipeError(recipe.source + ": parallel.pp: pipeline parallelism is not implemented yet");
  }
  if (p.ep > 1) {
    throw RecipeError(recipe.source + ": parallel.ep: expert parallelism is not implemented yet");
  }
}

// Sums this replica's gradients, loss parts and MoE loads over the data-parallel group; returns
// the seconds spent waiting for the communication.
double all_reduce_step(parallel::Comm& dp, Model& model, MicroBatchLoss& loss) {
  if (dp.size() == 1) return 0.0;
  const auto t0 = Clock::now();
  ParamTable& params = model.params();
  std::vector<parallel::Work> work;
  work.push_back(dp.all_reduce(std::span<float>(params.grads().data<float>(), params.numel())));
  std::vector<int64_t> loads;
  for (MoeBlock* moe : model.moe_blocks()) {
    loads.insert(loads.end(), moe->load_counts().begin(), moe->load_counts().end());
  }
  if (!loads.empty()) work.push_back(dp.all_reduce(std::span<int64_t>(loads)));
  double parts[4] = {loss.loss, loss.ce_sum, loss.aux, static_cast<double>(loss.tokens)};
  work.push_back(dp.all_reduce(std::span<double>(parts, 4)));
  for (parallel::Work& w : work) w.wait();
  size_t offset = 0;
  for (MoeBlock* moe : model.moe_blocks()) {
    std::copy_n(loads.begin() + offset, moe->n_experts(), moe->load_counts().begin());
    offset += moe->n_experts();
  }
  loss = {parts[0], parts[1], parts[2], static_cast<int64_t>(parts[3])};
  return seconds_since(t0);
}

}  // namespace

TrainSummary train(const Recipe& recipe, parallel::Comm& world, std::ostream& out) {
  check_layout(recipe, world.size());
  parallel::Comm& dp = world;  // pp = 1: the data-parallel group is the world
  const bool is_root = world.rank() == 0;
  kernels::set_cpu_threads(static_cast<int>(recipe.run.cpu_threads));
  const TrainConfig& tc = recipe.train;
  const int64_t micro_batches = recipe.parallel.micro_batches;
  const int64_t mb_rows = tc.global_batch / (dp.size() * micro_batches);
  const int64_t row_len = tc.seq_len + 1;
  const int64_t tokens_per_step = tc.global_batch * tc.seq_len;

  const fs::path run_dir(recipe.run.dir);
  if (is_root) {
    fs::create_directories(run_dir);
    std::ofstream pinned(run_dir / "recipe.yaml");
    pinned << recipe_to_yaml(recipe);
  }

  data::LoaderOptions lo;
  lo.dataset_dir = recipe.data.path;
  lo.split = "train";
  lo.seq_len = tc.seq_len;
  lo.global_batch = tc.global_batch;
  lo.replica = dp.rank();
  lo.n_replicas = dp.size();
  lo.vocab_size = recipe.model.vocab_size;
  lo.seed = tc.seed;
  lo.shuffle = true;
  lo.prefetch = static_cast<int>(recipe.data.prefetch);
  data::Loader loader(lo);
  const data::Manifest& manifest = loader.manifest();

  Model model(recipe.model);
  ParamTable& params = model.params();
  params.init(tc.seed, recipe.model.init_std);
  AdamW optimizer(recipe.optimizer);
  std::optional<MetricsWriter> metrics;
  if (is_root) metrics.emplace((run_dir / "metrics.jsonl").string(), /*append=*/false);
  RankLog rank_log(recipe.run.dir, world.rank(), is_root ? &out : nullptr);
  std::ostream& log = rank_log.stream();

  log << "tessera: training " << recipe.source << ": " << params.numel() << " parameters, "
      << tc.steps << " steps of " << tc.global_batch << " x " << tc.seq_len << " tokens, "
      << micro_batches << " micro-batch(es), gemm " << kernels::gemm_backend_name(kernels::gemm_backend())
      << ", " << recipe.run.cpu_threads << " thread(s) per process, " << dp.size()
      << " data-parallel process(es)\n";
  if (manifest.entropy_rate_nats) {
    log << "tessera: data entropy floor " << format("%.4f", *manifest.entropy_rate_nats)
        << " nats/token\n";
  }
  log.flush();

  const LossScale scale{1.0 / static_cast<double>(tokens_per_step),
                        1.0 / static_cast<double>(tc.global_batch)};
  std::vector<int32_t> batch;
  TrainSummary summary;
  summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t tokens_seen = 0;
  double input_wait_total = 0, step_time_total = 0;
  for (int64_t step = 1; step <= tc.steps; ++step) {
    const auto t0 = Clock::now();
    const double wait_before = loader.wait_seconds();
    loader.next(batch);
    const double input_wait = loader.wait_seconds() - wait_before;
    input_wait_total += input_wait;

    params.zero_grads();
    MicroBatchLoss step_loss;
    for (int64_t m = 0; m < micro_batches; ++m) {
      step_loss +=
          model.TrainMicroBatch(batch.data() + m * mb_rows * row_len, mb_rows, tc.seq_len, scale);
    }
    const double exposed_comm = all_reduce_step(dp, model, step_loss);
    if (!std::isfinite(step_loss.loss)) {
      throw std::runtime_error("loss is not finite at step " + std::to_string(step) +
                               " (lower optimizer.lr or check the data)");
    }
    const double norm = grad_norm(params);
    const double lr = learning_rate(recipe.optimizer.lr, recipe.schedule, step, tc.steps);
    optimizer.Step(params, lr, clip_scale(norm, recipe.optimizer.grad_clip));
    double load_ratio = 0;
    for (MoeBlock* moe : model.moe_blocks()) {
      load_ratio = std::max(load_ratio, moe->update_bias(recipe.model.bias_update_gamma));
    }
    tokens_seen += tokens_per_step;
    const double step_s = seconds_since(t0);
    step_time_total += step_s;
    const double ce = step_loss.ce_sum / static_cast<double>(step_loss.tokens);
    summary.final_loss = step_loss.loss;
    summary.steps = step;

    JsonLine line;
    line.add("step", step)
        .add("loss", step_loss.loss)
        .add("ce_loss", ce)
        .add("aux_loss", step_loss.aux)
        .add("lr", lr)
        .add("grad_norm", norm)
        .add("tokens_per_s", tokens_per_step / step_s)
        .add("step_s", step_s)
        .add("input_wait_s", input_wait)
        .add("exposed_comm_s", exposed_comm)
        .add("expert_load_max_over_mean", load_ratio)
        .add("tokens_seen", tokens_seen);

    const bool eval_now = (tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps;
    if (eval_now && is_root) {  // parameters are identical on every replica
      const EvalResult ev =
          evaluate(model, recipe.data.path, tc.seq_len, tc.global_batch / micro_batches,
                   tc.eval_batches * micro_batches);
      line.add("val_loss", ev.loss).add("val_tokens", ev.tokens);
      summary.final_val_loss = ev.loss;
    }
    if (metrics) metrics->write(line);

    if (step % recipe.logging.every_steps == 0 || step == tc.steps || eval_now) {
      log << "step " << step << "/" << tc.steps << "  loss " << format("%.4f", step_loss.loss)
          << "  lr " << format("%.3e", lr) << "  grad_norm " << format("%.3f", norm) << "  "
          << format("%.0f", tokens_per_step / step_s) << " tok/s  load max/mean "
          << format("%.2f", load_ratio);
      if (eval_now && is_root) log << "  val_loss " << format("%.4f", summary.final_val_loss);
      log << "\n";
      log.flush();
    }

    const bool save_now = (recipe.checkpoint.every_steps > 0 &&
                           step % recipe.checkpoint.every_steps == 0) ||
                          step == tc.steps;
    if (save_now && is_root) {
      const data::LoaderState ls = loader.state();
      CheckpointMeta meta{step, tokens_seen, ls.epoch, ls.cursor};
      summary.last_checkpoint = save_checkpoint((run_dir / "checkpoints").string(), params, meta,
                                                recipe, recipe.checkpoint.keep_last);
      log << "tessera: saved " << summary.last_checkpoint << "\n";
    }
  }
  log << "tessera: done, " << summary.steps << " steps in " << format("%.1f", step_time_total)
      << " s; waited for input " << format("%.4f", input_wait_total) << " s ("
      << format("%.3f", 100 * input_wait_total / step_time_total) << "% of step time)\n";
  return summary;
}

}  // namespace tessera::trainer
