#include "trainer/trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <vector>

#include "data/loader.h"
#include "data/split_reader.h"
#include "kernels/gemm.h"
#include "parallel/liveness.h"
#include "parallel/mpi_comm.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule_registry.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/resume.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/checkpoint/staging.h"
#include "trainer/checkpoint/writer.h"
#include "trainer/cpu_threads_check.h"
#include "trainer/device_backend.h"
#include "trainer/device_groups.h"
#include "trainer/distributed_eval.h"
#include "trainer/flop_count.h"
#include "trainer/memory_check.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/parallel_layout.h"
#include "trainer/pipeline_stage.h"
#include "trainer/rank_log.h"
#include "trainer/recipe_agreement.h"
#include "trainer/run_dir_claim.h"
#include "trainer/step_stats.h"
#include "trainer/step_tracer.h"
#include "trainer/stop_signal.h"
#include "trainer/zero_optimizer.h"

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

// The process's peak resident memory so far (Linux reports ru_maxrss in KiB).
double peak_rss_bytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;
}

// Communication so far on these communicators: seconds callers spent blocked on their Works
// (exposed) and the summed post-to-completion time of their operations (all communication).
struct CommTime {
  double exposed = 0, total = 0;
};
CommTime comm_time(const std::vector<parallel::Comm*>& comms) {
  CommTime t;
  for (const parallel::Comm* c : comms) {
    const parallel::CommStats s = c->stats();
    t.exposed += s.wait_seconds;
    t.total += s.op_seconds;
  }
  return t;
}

// Points the world communicator's liveness lines at this rank's log while it lives.
class LivenessToRankLog {
 public:
  LivenessToRankLog(parallel::MpiComm* world, const std::string& run_dir, int rank)
      : world_(world) {
    if (world_) {
      world_->liveness().set_sink(
          [run_dir, rank](const std::string& line) { RankLog::append(run_dir, rank, line); });
    }
  }
  ~LivenessToRankLog() {
    if (world_) world_->liveness().set_sink(nullptr);
  }
  LivenessToRankLog(const LivenessToRankLog&) = delete;
  LivenessToRankLog& operator=(const LivenessToRankLog&) = delete;

 private:
  parallel::MpiComm* world_;
};

}  // namespace

TrainSummary train(const Recipe& recipe, parallel::Comm& world, std::ostream& out,
                   const TrainOptions& options) {
  // The same recipe on every rank, then the layout: a bad one fails identically on every rank
  // before anything is allocated.
  check_same_recipe(recipe, world);
  ParallelLayout layout = make_parallel_layout(recipe, world);
  auto* mpi_world = dynamic_cast<parallel::MpiComm*>(&world);
  const bool checkpointing =
      recipe.checkpoint.every_steps > 0 || recipe.checkpoint.final || !options.resume.empty();
  if (!mpi_world && checkpointing) {
    throw std::logic_error(
        "train: checkpoints (checkpoint.every_steps, checkpoint.final, --resume) need an MPI "
        "world communicator");
  }
  check_cpu_threads(recipe.run.cpu_threads, world);
  check_memory_fits(recipe, layout.grid.ranks_per_node(), world);
  // Before anything touches run.dir; rank 0 keeps the lock until train() returns (it outlives
  // everything declared below, the checkpoint writer included).
  const RunDirLock run_dir_lock = claim_run_dir(
      recipe.run.dir,
      !options.resume.empty() ? RunDirUse::kResume
                              : (options.overwrite ? RunDirUse::kOverwrite : RunDirUse::kFresh),
      world);
  parallel::Comm& dp = *layout.dp;
  const bool is_root = world.rank() == 0;
  kernels::set_cpu_threads(static_cast<int>(recipe.run.cpu_threads));
  const std::unique_ptr<kernels::Backend> backend = make_device_backend(recipe, world);
  const TrainConfig& tc = recipe.train;
  const int64_t micro_batches = recipe.parallel.micro_batches;
  // Data replicas: the grid's (with dualpipe the dp group spans a mirrored stage pair).
  const int64_t mb_rows = tc.global_batch / (layout.grid.dp() * micro_batches);
  const int64_t tokens_per_step = tc.global_batch * tc.seq_len;
  const double training_flops_per_token = flops_per_token(recipe.model, tc.seq_len).training;

  const fs::path run_dir(recipe.run.dir);
  if (is_root) {
    fs::create_directories(run_dir);
    fs::remove(run_dir / "DONE");
    std::ofstream pinned(run_dir / "recipe.yaml");
    pinned << recipe_to_yaml(recipe);
  }

  // Evaluation passes activations along the pipeline on a communicator of its own.
  const std::unique_ptr<parallel::Comm> eval_pipeline =
      world.split(layout.grid.pp_group(world.rank()), "pp-eval");
  // Tensors in the backend's memory travel on these (MPI on the CPU, NCCL on a GPU).
  const DeviceGroups groups(layout, *eval_pipeline, *backend);
  Model model(recipe.model, *backend, layout.part, groups.ep(), dp.size(),
              layout.expert_dp->size(), layout.ep.get());
  // ---- node-aware expert dispatch: where the EP group sits and which path the rows take.
  for (MoeBlock* moe : model.moe_blocks()) {
    moe->set_nodes(layout.ep_ranks_per_node, layout.node_aware_dispatch);
  }
  // ---- end node-aware expert dispatch
  ParamTable& params = model.params();
  params.init(tc.seed, recipe.model.init_std);
  ZeroOptimizer optimizer(
      recipe.optimizer, params, groups.dp(), groups.expert_dp(),
      std::max<int64_t>(1, static_cast<int64_t>(recipe.parallel.grad_bucket_mb * (1 << 20) / 4)));
  parallel::PipelineExecutor executor(groups.pp(), layout.schedule,
                                      mb_rows * tc.seq_len * recipe.model.dim, *backend);
  LossScale scale{1.0 / static_cast<double>(tokens_per_step),
                  1.0 / static_cast<double>(tc.global_batch), 0.0};
  // Gradient buckets are reduce-scattered as soon as the backward finished them.
  ModelStage stage(model, scale, layout.schedule, layout.coords.pp_rank, mb_rows, tc.seq_len,
                   [&optimizer](int first, int end) { optimizer.MarkFinal(first, end); });
  stage.set_overlap(recipe.parallel.overlap);
  std::vector<parallel::Comm*> comms{&world, layout.pp.get(), &dp, layout.ep.get(),
                                     layout.expert_dp.get()};
  for (parallel::Comm* c : groups.owned()) comms.push_back(c);
  // The expert exchanges' communicators (rows and counts; one object on the CPU): their share of
  // the communication and of its exposure is what the FB overlap hides.
  std::vector<parallel::Comm*> expert_comms;
  for (parallel::Comm* c : {groups.ep(), layout.ep.get()}) {
    if (c && std::find(expert_comms.begin(), expert_comms.end(), c) == expert_comms.end()) {
      expert_comms.push_back(c);
    }
  }
  // -- trace: Chrome trace of logging.trace_steps (trainer/step_tracer.h); hand
  // tracer.recorder() to compute code for parallel::TraceSpan events --
  StepTracer tracer(parse_step_range(recipe.logging.trace_steps), world, comms, layout.coords,
                    recipe.run.dir);
  stage.set_trace(tracer.recorder());  // every piece of F, B, W and FB
  const std::vector<CheckpointTensor> tensors = checkpoint_tensors(recipe.model);
  // HDF5 reads and writes host memory: device values and moments go through host mirrors.
  CheckpointStaging staging(params, optimizer);
  const CheckpointSlices slices(tensors, params, optimizer, staging.buffers());
  std::optional<CheckpointWriter> checkpoints;
  if (mpi_world) {
    checkpoints.emplace(mpi_world->handle(), tensors, recipe.checkpoint.async,
                        mpi_world->blocking_watch(), *options.checkpoint_env);
  }
  std::optional<StopSignal> own_stop_signal;
  const StopSignal& stop_signal =
      options.stop_signal ? *options.stop_signal : own_stop_signal.emplace();

  RankLog rank_log(recipe.run.dir, world.rank(), is_root ? &out : nullptr);
  std::ostream& log = rank_log.stream();
  // Lines about stalled waits (what the peers were doing) go to this log too, for this run.
  const LivenessToRankLog liveness_log(mpi_world, recipe.run.dir, world.rank());
  const parallel::PredictedBubble bubble_theory = parallel::predicted_bubble(
      recipe.parallel.schedule, layout.schedule.pp(), layout.schedule.micro_batches,
      static_cast<int>(recipe.parallel.virtual_stages));
  log << "tessera: training " << recipe.source << ": " << params.numel() << " parameters on this rank, "
      << tc.steps << " steps of " << tc.global_batch << " x " << tc.seq_len << " tokens, "
      << micro_batches << " micro-batch(es) per replica, on " << backend->capabilities().name
      << "\n";
  log << "tessera: rank " << world.rank() << " of " << world.size() << ": " << layout.grid.describe()
      << "; stage " << layout.coords.pp_rank << ", replica " << layout.coords.dp_rank << ", expert slice "
      << layout.coords.ep_rank << "; schedule " << layout.schedule.name << " ("
      << (bubble_theory.closed_form ? "theoretical" : "simulated") << " bubble "
      << format("%.3f", bubble_theory.fraction) << ")\n";
  {
    std::string contexts;
    for (int c = 0; c < model.n_chunks(); ++c) {
      contexts += (c ? ", " : "") + std::to_string(stage.contexts_per_chunk()[c]) + " x " +
                  format("%.2f", static_cast<double>(stage.context_bytes(c)) / (1 << 20)) + " MiB";
    }
    log << "tessera: rank " << world.rank() << " micro-batch contexts per chunk: " << contexts
        << "; pipeline buffers planned (at most) "
        << parallel::PipelineExecutor::PlannedPoolBuffers(layout.schedule, layout.coords.pp_rank)
        << "\n";
  }
  if (!run_dir_lock.warning().empty()) log << run_dir_lock.warning() << "\n";
  log.flush();

  CheckpointMeta resumed;
  if (!options.resume.empty()) {
    const auto region = watch_checkpoint_io(mpi_world->blocking_watch(),
                                            "checkpoint load (--resume " + options.resume + ")",
                                            slice_bytes(slices.owned()));
    resumed = resume_from_checkpoint(options.resume, recipe, mpi_world->handle(), tensors, slices,
                                     log, *options.checkpoint_env);
    staging.to_device();
    optimizer.set_steps_taken(resumed.optimizer_step);
  }

  // Every stage of a pipeline reads the same replica's batch: the first stage needs the inputs,
  // the last the targets (reading is cheap next to compute).
  data::LoaderOptions lo;
  lo.dataset_dir = recipe.data.path;
  lo.split = "train";
  lo.seq_len = tc.seq_len;
  lo.extra_tokens = recipe.model.mtp_depth;
  lo.global_batch = tc.global_batch;
  lo.replica = layout.coords.dp_rank;
  lo.n_replicas = layout.grid.dp();
  lo.vocab_size = recipe.model.vocab_size;
  lo.seed = tc.seed;
  lo.shuffle = true;
  lo.prefetch = static_cast<int>(recipe.data.prefetch);
  lo.start = {resumed.loader_epoch, resumed.loader_cursor};
  // The shard cache's default budget is per node: the processes of a node share it.
  lo.cache_bytes /= static_cast<uint64_t>(layout.grid.ranks_per_node());
  data::Loader loader(lo);
  const data::Manifest& manifest = loader.manifest();
  // The validation split is first read at an evaluation, the last one after the last step: a
  // damaged shard found only then ended a run whose steps were done, before its final checkpoint.
  // Every rank reads it at evaluations, so every rank checks it now (checksums, ids < vocab).
  data::SplitReader(recipe.data.path, manifest, data::kValidationSplit, recipe.model.vocab_size,
                    /*cache_bytes=*/0)
      .verify_all();
  if (manifest.entropy_rate_nats) {
    log << "tessera: data entropy floor " << format("%.4f", *manifest.entropy_rate_nats)
        << " nats/token\n";
  }

  std::optional<MetricsWriter> metrics;
  if (is_root) {
    const std::string path = (run_dir / "metrics.jsonl").string();
    // A resumed run continues the file from its checkpoint's step.
    if (resumed.step > 0) {
      truncate_metrics(path, resumed.step, resumed.metrics_line);
    } else if (!options.resume.empty()) {
      // --resume found nothing to resume: the steps of an attempt that ended before its first
      // checkpoint are redone, and their lines are kept beside the new ones, not overwritten.
      if (const std::string kept = set_aside_metrics(path); !kept.empty()) {
        log << "tessera: the metrics of the attempt without a checkpoint are kept in " << kept
            << "\n";
      }
    }
    metrics.emplace(path, /*append=*/resumed.step > 0);
  }

  std::vector<int32_t> batch;
  std::vector<int64_t> loads;
  TrainSummary summary;
  summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  summary.steps = resumed.step;
  int64_t tokens_seen = resumed.tokens_seen;
  double input_wait_total = 0, step_time_total = 0;
  for (int64_t step = resumed.step + 1; step <= tc.steps; ++step) {
    tracer.begin_step(step);  // -- trace --
    const auto t0 = Clock::now();
    const CommTime comm_before = comm_time(comms);
    const CommTime expert_before = comm_time(expert_comms);
    const double wait_before = loader.wait_seconds();
    loader.next(batch);
    const double input_wait = loader.wait_seconds() - wait_before;
    input_wait_total += input_wait;

    params.zero_grads();
    optimizer.BeginStep();
    scale.mtp_weight = mtp_loss_weight(recipe.model, tokens_seen);
    stage.set_loss_scale(scale);
    stage.BeginStep(batch.data());
    const parallel::PipelineStepStats pipe = executor.run(stage);
    if (parallel::Comm* tie = groups.embedding_tie()) {
      // MTP's tied embedding: the first stage's gradient and the head stage's copy's, summed
      // (both ranks then take identical optimizer steps), before the data-parallel reduction.
      const auto [first, end] = model.embedding_params();
      float* grad = params.grad_ptr(first);
      tie->all_reduce(std::span<float>(grad, static_cast<size_t>(params.descs()[first].numel())))
          .wait();
      optimizer.MarkFinal(first, end);
    }

    // Expert loads of the whole global batch (every replica of this stage), the rest of the
    // gradients (ZeRO-1 reduce-scatter), then one world all-reduce of the scalars every rank
    // needs, including whether any rank was asked to stop.
    loads.clear();
    for (MoeBlock* moe : model.moe_blocks()) {
      loads.insert(loads.end(), moe->load_counts().begin(), moe->load_counts().end());
    }
    parallel::Work loads_work;
    if (!loads.empty()) loads_work = dp.all_reduce(std::span<int64_t>(loads));
    const double sum_squares = optimizer.FinishReduction();
    const MicroBatchLoss& part = stage.loss();
    const int signal = stop_signal.received();
    StepSums mine;
    mine.grad_sum_squares = sum_squares;
    mine.loss = part.loss;
    mine.ce_sum = part.ce_sum;
    mine.aux = part.aux;
    mine.tokens = static_cast<double>(part.tokens);
    mine.pipeline_compute_s = pipe.compute_s;
    mine.pipeline_total_s = pipe.total_s;
    mine.stop_requests = signal ? 1.0 : 0.0;
    mine.mtp_ce_sum.assign(static_cast<size_t>(recipe.model.mtp_depth), 0.0);
    std::copy(part.mtp_ce_sum.begin(), part.mtp_ce_sum.end(), mine.mtp_ce_sum.begin());
    const StepSums sums = all_reduce_step_sums(world, mine);
    loads_work.wait();
    size_t offset = 0;
    for (MoeBlock* moe : model.moe_blocks()) {
      std::copy_n(loads.begin() + offset, moe->n_experts(), moe->load_counts().begin());
      offset += moe->n_experts();
    }
    MicroBatchLoss step_loss;
    step_loss.loss = sums.loss;
    step_loss.ce_sum = sums.ce_sum;
    step_loss.aux = sums.aux;
    step_loss.tokens = static_cast<int64_t>(sums.tokens);
    if (!std::isfinite(step_loss.loss)) {
      throw std::runtime_error("loss is not finite at step " + std::to_string(step) +
                               " (lower optimizer.lr or check the data)");
    }
    const double norm = std::sqrt(sums.grad_sum_squares);
    const double bubble =
        sums.pipeline_total_s > 0 ? 1.0 - sums.pipeline_compute_s / sums.pipeline_total_s : 0.0;
    const bool stop_now = sums.stop_requests > 0;
    const double lr = learning_rate(recipe.optimizer.lr, recipe.schedule, step, tc.steps);
    optimizer.Step(lr, clip_scale(norm, recipe.optimizer.grad_clip));
    StepMetricTotals metrics_mine;
    for (MoeBlock* moe : model.moe_blocks()) {  // the worst MoE layer of the whole model
      metrics_mine.expert_load_max_over_mean =
          std::max(metrics_mine.expert_load_max_over_mean,
                   moe->update_bias(recipe.model.bias_update_gamma));
    }
    tokens_seen += tokens_per_step;
    const double step_s = seconds_since(t0);
    // Averaged over the ranks (the metrics' all-reduces themselves are not counted).
    const CommTime comm_after = comm_time(comms);
    const CommTime expert_after = comm_time(expert_comms);
    metrics_mine.exposed_comm_s = comm_after.exposed - comm_before.exposed;
    metrics_mine.comm_s = comm_after.total - comm_before.total;
    metrics_mine.expert_exposed_comm_s = expert_after.exposed - expert_before.exposed;
    metrics_mine.expert_comm_s = expert_after.total - expert_before.total;
    metrics_mine.peak_rss_mib = peak_rss_bytes() / double(1 << 20);
    for (MoeBlock* moe : model.moe_blocks()) {  // bytes the expert exchanges sent off-node
      metrics_mine.expert_cross_node_bytes += static_cast<double>(moe->take_cross_node_bytes());
    }
    const StepMetricTotals step_metrics = all_reduce_step_metrics(world, metrics_mine);
    const double load_ratio = step_metrics.expert_load_max_over_mean;
    const double peak_rss_mib = step_metrics.peak_rss_mib;
    const double exposed_comm = step_metrics.exposed_comm_s / world.size();
    const double comm_s = step_metrics.comm_s / world.size();
    const double expert_exposed_comm = step_metrics.expert_exposed_comm_s / world.size();
    const double expert_comm_s = step_metrics.expert_comm_s / world.size();
    step_time_total += step_s;
    const double ce = step_loss.ce_sum / static_cast<double>(step_loss.tokens);
    std::vector<double> mtp_loss;  // per depth: mean CE over the same tokens as ce
    for (double ce_sum : sums.mtp_ce_sum) {
      mtp_loss.push_back(ce_sum / static_cast<double>(step_loss.tokens));
    }
    summary.final_loss = step_loss.loss;
    summary.steps = step;
    if (step == resumed.step + 1) {
      log << "tessera: rank " << world.rank() << " pipeline buffers after the first step: "
          << executor.pool_buffers() << "\n";
    }

    // -- trace: after the last traced step, write the trace (before evaluation and checkpoints) --
    if (const std::string trace = tracer.end_step(step, stop_now || step == tc.steps);
        !trace.empty()) {
      log << "tessera: trace of steps " << recipe.logging.trace_steps << " written to " << trace
          << " (plot: tessera trace plot " << recipe.run.dir << ")\n";
    }

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
        .add("comm_s", comm_s)
        .add("expert_exposed_comm_s", expert_exposed_comm)
        .add("expert_comm_s", expert_comm_s)
        .add("bubble_fraction", bubble)
        .add("bubble_predicted", bubble_theory.fraction)
        .add("peak_rss_mib", peak_rss_mib)
        .add("expert_load_max_over_mean", load_ratio)
        .add("tokens_seen", tokens_seen);
    if (!mtp_loss.empty()) line.add("mtp_loss", mtp_loss).add("mtp_weight", scale.mtp_weight);
    // Model FLOPs utilisation: the planner's FLOP formulas over the devices' peak.
    const double mfu = recipe.run.peak_tflops > 0
                           ? training_flops_per_token * tokens_per_step / step_s /
                                 (world.size() * recipe.run.peak_tflops * 1e12)
                           : 0.0;
    if (recipe.run.peak_tflops > 0) line.add("mfu", mfu);
    line.add("expert_cross_node_bytes",
             static_cast<int64_t>(step_metrics.expert_cross_node_bytes));  // all ranks

    const bool eval_now =
        !stop_now && ((tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps);
    if (eval_now) {
      const EvalResult ev = evaluate_distributed(
          model, layout, world, groups.eval_pipeline(), recipe.data.path, tc.seq_len,
          tc.global_batch / micro_batches, tc.eval_batches * micro_batches);
      line.add("val_loss", ev.loss).add("val_tokens", ev.tokens);
      summary.final_val_loss = ev.loss;
    }

    const bool save_now = stop_now ||
                          (recipe.checkpoint.every_steps > 0 &&
                           step % recipe.checkpoint.every_steps == 0) ||
                          (step == tc.steps && recipe.checkpoint.final);
    if (save_now) {
      if (!checkpoints) throw std::logic_error("train: a checkpoint is due without MPI-IO");
      const data::LoaderState ls = loader.state();
      const CheckpointMeta meta{step,         tokens_seen,
                                ls.epoch,     ls.cursor,
                                optimizer.steps_taken(), world.size(),
                                line.str()};
      const auto staged_at = Clock::now();
      staging.to_host();
      const double stall = seconds_since(staged_at) +
                           checkpoints->Save(slices.owned(), meta, recipe,
                                            (run_dir / "checkpoints").string(),
                                            recipe.checkpoint.keep_last);
      line.add("checkpoint_stall_s", stall);
    }
    if (metrics) metrics->write(line);

    if (step % recipe.logging.every_steps == 0 || step == tc.steps || eval_now || stop_now) {
      log << "step " << step << "/" << tc.steps << "  loss " << format("%.4f", step_loss.loss)
          << "  lr " << format("%.3e", lr) << "  grad_norm " << format("%.3f", norm) << "  "
          << format("%.0f", tokens_per_step / step_s) << " tok/s  load max/mean "
          << format("%.2f", load_ratio);
      if (!mtp_loss.empty()) {
        log << "  ce " << format("%.4f", ce) << "  mtp";
        for (double l : mtp_loss) log << " " << format("%.4f", l);
      }
      if (recipe.run.peak_tflops > 0) log << "  mfu " << format("%.1f", 100 * mfu) << "%";
      if (world.size() > 1) {
        log << "  bubble " << format("%.3f", bubble) << "  exposed comm "
            << format("%.4f", exposed_comm) << " s";
      }
      if (eval_now) log << "  val_loss " << format("%.4f", summary.final_val_loss);
      log << "\n";
      log.flush();
    }
    if (save_now && !recipe.checkpoint.async) {
      if (checkpoints) summary.last_checkpoint = checkpoints->Wait();
      log << "tessera: saved " << summary.last_checkpoint << "\n";
    }
    if (stop_now) {
      if (checkpoints) summary.last_checkpoint = checkpoints->Wait();
      summary.stop_reason = signal ? StopSignal::name(signal) : "a stop signal on another rank";
      log << "tessera: stopping after step " << step << " (" << summary.stop_reason << "): saved "
          << summary.last_checkpoint << "\n";
      log.flush();
      return summary;
    }
  }
  if (checkpoints) summary.last_checkpoint = checkpoints->Wait();
  if (recipe.checkpoint.async && !summary.last_checkpoint.empty()) {
    log << "tessera: saved " << summary.last_checkpoint << "\n";
  }
  if (is_root) {
    std::ofstream done(run_dir / "DONE");
    done << "step " << summary.steps << "\n";
  }
  log << "tessera: done, " << summary.steps << " steps";
  if (step_time_total > 0) {
    log << " in " << format("%.1f", step_time_total) << " s; waited for input "
        << format("%.4f", input_wait_total) << " s ("
        << format("%.3f", 100 * input_wait_total / step_time_total) << "% of step time)";
  }
  log << "\n";
  return summary;
}

}  // namespace tessera::trainer
