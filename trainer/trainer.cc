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
#include "kernels/bf16_gemm_choice.h"
#include "kernels/cpu_backend.h"
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

// The run directory, taken before anything touches it: rank 0 holds its lock (claim_run_dir)
// and, once it has it, clears DONE and pins the resolved recipe.
RunDirLock take_run_dir(const Recipe& recipe, parallel::Comm& world, const TrainOptions& options) {
  RunDirLock lock = claim_run_dir(
      recipe.run.dir,
      !options.resume.empty() ? RunDirUse::kResume
                              : (options.overwrite ? RunDirUse::kOverwrite : RunDirUse::kFresh),
      world);
  if (world.rank() == 0) {
    const fs::path run_dir(recipe.run.dir);
    fs::create_directories(run_dir);
    fs::remove(run_dir / "DONE");
    std::ofstream pinned(run_dir / "recipe.yaml");
    pinned << recipe_to_yaml(recipe);
  }
  return lock;
}

// The start-up checks, identical on every rank, before anything is allocated or written: the
// same recipe everywhere, a valid layout (returned), checkpoints only over MPI, thread and memory
// bounds.
ParallelLayout checked_layout(const Recipe& recipe, parallel::Comm& world,
                              const TrainOptions& options) {
  check_same_recipe(recipe, world);
  ParallelLayout layout = make_parallel_layout(recipe, world);
  const bool checkpointing =
      recipe.checkpoint.every_steps > 0 || recipe.checkpoint.final || !options.resume.empty();
  if (checkpointing && !dynamic_cast<parallel::MpiComm*>(&world)) {
    throw std::logic_error(
        "train: checkpoints (checkpoint.every_steps, checkpoint.final, --resume) need an MPI "
        "world communicator");
  }
  check_cpu_threads(recipe.run.cpu_threads, world);
  check_memory_fits(recipe, layout.grid.ranks_per_node(), world);
  return layout;
}

std::unique_ptr<kernels::Backend> threaded_backend(const Recipe& recipe, parallel::Comm& world) {
  kernels::set_cpu_threads(static_cast<int>(recipe.run.cpu_threads));
  return make_device_backend(recipe, world);
}

}  // namespace

// Everything one rank's run holds, in the order it is made (and unmade in reverse): the run
// directory's lock outlives everything, the checkpoint writer included; the model and optimizer
// outlive the writer that saves them.
struct Trainer::Run {
  Run(const Recipe& recipe_in, parallel::Comm& world_in, std::ostream& out,
      const TrainOptions& options_in);
  StepReport Step();
  TrainSummary Finish();

  const Recipe recipe;
  parallel::Comm& world;
  const TrainOptions options;
  ParallelLayout layout;
  parallel::MpiComm* const mpi_world;
  const RunDirLock run_dir_lock;
  const bool is_root;
  const std::unique_ptr<kernels::Backend> backend;
  // Data replicas: the grid's (with dualpipe the dp group spans a mirrored stage pair).
  const int64_t mb_rows;
  const int64_t tokens_per_step;
  const double training_flops_per_token;
  // Evaluation passes activations along the pipeline on a communicator of its own.
  const std::unique_ptr<parallel::Comm> eval_pipeline;
  // Tensors in the backend's memory travel on these (MPI on the CPU, NCCL on a GPU).
  const DeviceGroups groups;
  Model model;
  ZeroOptimizer optimizer;
  parallel::PipelineExecutor executor;
  LossScale scale;
  std::optional<ModelStage> stage;  // made once the MoE blocks know their nodes
  std::vector<parallel::Comm*> comms;
  // The expert exchanges' communicators (rows and counts; one object on the CPU): their share of
  // the communication and of its exposure is what the FB overlap hides.
  std::vector<parallel::Comm*> expert_comms;
  StepTracer tracer;
  const std::vector<CheckpointTensor> tensors;
  // HDF5 reads and writes host memory: device values and moments go through host mirrors.
  CheckpointStaging staging;
  const CheckpointSlices slices;
  std::optional<CheckpointWriter> checkpoints;
  std::optional<StopSignal> own_stop_signal;
  const StopSignal& stop_signal;
  RankLog rank_log;
  std::ostream& log;
  // Lines about stalled waits (what the peers were doing) go to this log too, for this run.
  const LivenessToRankLog liveness_log;
  const parallel::PredictedBubble bubble_theory;
  CheckpointMeta resumed;
  std::optional<data::Loader> loader;
  std::optional<MetricsWriter> metrics;

  // The loop's state.
  std::vector<int32_t> batch;
  std::vector<int64_t> loads;
  int64_t step = 0;  // the last step taken
  int64_t tokens_seen = 0;
  double input_wait_total = 0, step_time_total = 0;
  bool stopped = false;  // a stop signal ended the run
  bool failed = false;   // a Step() threw
  bool finished_once = false;
  TrainSummary summary;
};

Trainer::Run::Run(const Recipe& recipe_in, parallel::Comm& world_in, std::ostream& out,
                  const TrainOptions& options_in)
    : recipe(recipe_in),
      world(world_in),
      options(options_in),
      layout(checked_layout(recipe, world, options)),
      mpi_world(dynamic_cast<parallel::MpiComm*>(&world)),
      run_dir_lock(take_run_dir(recipe, world, options)),
      is_root(world.rank() == 0),
      backend(threaded_backend(recipe, world)),
      mb_rows(recipe.train.global_batch / (layout.grid.dp() * recipe.parallel.micro_batches)),
      tokens_per_step(recipe.train.global_batch * recipe.train.seq_len),
      training_flops_per_token(flops_per_token(recipe.model, recipe.train.seq_len).training),
      eval_pipeline(world.split(layout.grid.pp_group(world.rank()), "pp-eval")),
      groups(layout, *eval_pipeline, *backend),
      model(recipe.model, *backend, layout.part, groups.ep(), layout.dp->size(),
            layout.expert_dp->size(), layout.ep.get()),
      optimizer(recipe.optimizer, model.params(), groups.dp(), groups.expert_dp(),
                std::max<int64_t>(
                    1, static_cast<int64_t>(recipe.parallel.grad_bucket_mb * (1 << 20) / 4))),
      executor(groups.pp(), layout.schedule, mb_rows * recipe.train.seq_len * recipe.model.dim,
               *backend),
      scale{1.0 / static_cast<double>(tokens_per_step),
            1.0 / static_cast<double>(recipe.train.global_batch), 0.0},
      comms{&world, layout.pp.get(), layout.dp.get(), layout.ep.get(), layout.expert_dp.get()},
      tracer(parse_step_range(recipe.logging.trace_steps), world, comms, layout.coords,
             recipe.run.dir),
      tensors(checkpoint_tensors(recipe.model)),
      staging(model.params(), optimizer),
      slices(tensors, model.params(), optimizer, staging.buffers()),
      stop_signal(options.stop_signal ? *options.stop_signal : own_stop_signal.emplace()),
      rank_log(recipe.run.dir, world.rank(), is_root ? &out : nullptr),
      log(rank_log.stream()),
      liveness_log(mpi_world, recipe.run.dir, world.rank()),
      bubble_theory(parallel::predicted_bubble(
          recipe.parallel.schedule, layout.schedule.pp(), layout.schedule.micro_batches,
          static_cast<int>(recipe.parallel.virtual_stages))) {
  const TrainConfig& tc = recipe.train;
  // Node-aware expert dispatch: where the EP group sits and which path the rows take (before
  // the stage sizes the blocks' activations).
  for (MoeBlock* moe : model.moe_blocks()) {
    moe->set_nodes(layout.ep_ranks_per_node, layout.node_aware_dispatch);
  }
  ParamTable& params = model.params();
  params.init(tc.seed, recipe.model.init_std);
  // Gradient buckets are reduce-scattered as soon as the backward finished them.
  stage.emplace(model, scale, layout.schedule, layout.coords.pp_rank, mb_rows, tc.seq_len,
                [this](int first, int end) { optimizer.MarkFinal(first, end); });
  stage->set_overlap(recipe.parallel.overlap);
  for (parallel::Comm* c : groups.owned()) comms.push_back(c);
  for (parallel::Comm* c : {groups.ep(), layout.ep.get()}) {
    if (c && std::find(expert_comms.begin(), expert_comms.end(), c) == expert_comms.end()) {
      expert_comms.push_back(c);
    }
  }
  // -- trace: Chrome trace of logging.trace_steps (trainer/step_tracer.h); hand
  // tracer.recorder() to compute code for parallel::TraceSpan events --
  stage->set_trace(tracer.recorder());  // every piece of F, B, W and FB
  if (mpi_world) {
    checkpoints.emplace(world, tensors, recipe.checkpoint.async,
                        mpi_world->blocking_watch(), *options.checkpoint_env);
  }

  log << "tessera: training " << recipe.source << ": " << params.numel()
      << " parameters on this rank, " << tc.steps << " steps of " << tc.global_batch << " x "
      << tc.seq_len << " tokens, " << recipe.parallel.micro_batches
      << " micro-batch(es) per replica, on " << backend->capabilities().name << "\n";
  // Say which bf16 GEMM the blocks' linear maps run (kernels/bf16_gemm_choice.h).
  if (const auto* cpu = dynamic_cast<const kernels::CpuBackend*>(backend.get());
      cpu && recipe.precision.compute == "bf16") {
    log << "tessera: bf16 GEMM " << kernels::describe_bf16_gemm(cpu->bf16_gemm()) << "\n";
  }
  log << "tessera: rank " << world.rank() << " of " << world.size() << ": "
      << layout.grid.describe() << "; stage " << layout.coords.pp_rank << ", replica "
      << layout.coords.dp_rank << ", expert slice " << layout.coords.ep_rank << "; schedule "
      << layout.schedule.name << " ("
      << (bubble_theory.closed_form ? "theoretical" : "simulated") << " bubble "
      << format("%.3f", bubble_theory.fraction) << ")\n";
  {
    std::string contexts;
    for (int c = 0; c < model.n_chunks(); ++c) {
      contexts += (c ? ", " : "") + std::to_string(stage->contexts_per_chunk()[c]) + " x " +
                  format("%.2f", static_cast<double>(stage->context_bytes(c)) / (1 << 20)) + " MiB";
    }
    log << "tessera: rank " << world.rank() << " micro-batch contexts per chunk: " << contexts
        << "; pipeline buffers planned (at most) "
        << parallel::PipelineExecutor::PlannedPoolBuffers(layout.schedule, layout.coords.pp_rank)
        << "\n";
  }
  if (!run_dir_lock.warning().empty()) log << run_dir_lock.warning() << "\n";
  log.flush();

  if (!options.resume.empty()) {
    const int64_t bytes = slice_bytes(slices.owned());
    const std::unique_ptr<parallel::Comm> comm = checkpoint_comm(world, bytes);
    const auto region = watch_checkpoint_io(
        mpi_world->blocking_watch(), "checkpoint load (--resume " + options.resume + ")", bytes);
    resumed = resume_from_checkpoint(options.resume, recipe, *comm, tensors, slices, log,
                                     *options.checkpoint_env);
    staging.to_device();
    optimizer.set_steps_taken(resumed.optimizer_step);
  }
  step = resumed.step;
  tokens_seen = resumed.tokens_seen;
  summary.steps = resumed.step;
  summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();

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
  const data::Manifest& manifest = loader.emplace(lo).manifest();
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

  if (is_root) {
    const std::string path = (fs::path(recipe.run.dir) / "metrics.jsonl").string();
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
}

StepReport Trainer::Run::Step() {
  const TrainConfig& tc = recipe.train;
  ParamTable& params = model.params();
  StepReport report;
  report.step = ++step;
  tracer.begin_step(step);  // -- trace --
  const auto t0 = Clock::now();
  const CommTime comm_before = comm_time(comms);
  const CommTime expert_before = comm_time(expert_comms);
  const double wait_before = loader->wait_seconds();
  loader->next(batch);
  report.input_wait_s = loader->wait_seconds() - wait_before;
  input_wait_total += report.input_wait_s;

  params.zero_grads();
  optimizer.BeginStep();
  scale.mtp_weight = mtp_loss_weight(recipe.model, tokens_seen);
  stage->set_loss_scale(scale);
  stage->BeginStep(batch.data());
  const parallel::PipelineStepStats pipe = executor.run(*stage);
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
  if (!loads.empty()) loads_work = layout.dp->all_reduce(std::span<int64_t>(loads));
  const double sum_squares = optimizer.FinishReduction();
  const MicroBatchLoss& part = stage->loss();
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
  report.loss = sums.loss;
  if (!std::isfinite(report.loss)) {
    throw std::runtime_error("loss is not finite at step " + std::to_string(step) +
                             " (lower optimizer.lr or check the data)");
  }
  report.ce_loss = sums.ce_sum / sums.tokens;
  report.aux_loss = sums.aux;
  for (double ce_sum : sums.mtp_ce_sum) report.mtp_loss.push_back(ce_sum / sums.tokens);
  report.mtp_weight = scale.mtp_weight;
  report.grad_norm = std::sqrt(sums.grad_sum_squares);
  report.bubble_fraction =
      sums.pipeline_total_s > 0 ? 1.0 - sums.pipeline_compute_s / sums.pipeline_total_s : 0.0;
  report.bubble_predicted = bubble_theory.fraction;
  const bool stop_now = sums.stop_requests > 0;
  report.lr = learning_rate(recipe.optimizer.lr, recipe.schedule, step, tc.steps);
  optimizer.Step(report.lr, clip_scale(report.grad_norm, recipe.optimizer.grad_clip));
  StepMetricTotals metrics_mine;
  for (MoeBlock* moe : model.moe_blocks()) {  // the worst MoE layer; EP ranks: the mean
    const MoeBlock::RoutingLoad load = moe->update_bias(recipe.model.bias_update_gamma);
    metrics_mine.expert_load_max_over_mean =
        std::max(metrics_mine.expert_load_max_over_mean, load.expert_max_over_mean);
    metrics_mine.expert_ep_rank_load_max_over_mean +=
        load.ep_rank_max_over_mean / static_cast<double>(model.moe_blocks().size());
  }
  tokens_seen += tokens_per_step;
  report.tokens_seen = tokens_seen;
  report.step_s = seconds_since(t0);
  report.tokens_per_s = tokens_per_step / report.step_s;
  // Averaged over the ranks (the metrics' all-reduces themselves are not counted).
  const CommTime comm_after = comm_time(comms);
  const CommTime expert_after = comm_time(expert_comms);
  metrics_mine.exposed_comm_s = comm_after.exposed - comm_before.exposed;
  metrics_mine.comm_s = comm_after.total - comm_before.total;
  metrics_mine.expert_exposed_comm_s = expert_after.exposed - expert_before.exposed;
  metrics_mine.expert_comm_s = expert_after.total - expert_before.total;
  metrics_mine.peak_rss_mib = peak_rss_bytes() / double(1 << 20);
  metrics_mine.device_peak_mib =
      static_cast<double>(backend->allocated_bytes().peak) / double(1 << 20);
  for (MoeBlock* moe : model.moe_blocks()) {  // bytes the expert exchanges sent off-node
    metrics_mine.expert_cross_node_bytes += static_cast<double>(moe->take_cross_node_bytes());
    const MoeBlock::ExchangeBytes sent = moe->take_exchange_bytes();
    metrics_mine.expert_dispatch_bytes += static_cast<double>(sent.dispatch);
    metrics_mine.expert_combine_bytes += static_cast<double>(sent.combine);
    metrics_mine.expert_grad_bytes += static_cast<double>(sent.dispatch_grads + sent.combine_grads);
  }
  const StepMetricTotals totals = all_reduce_step_metrics(world, metrics_mine);
  report.expert_load_max_over_mean = totals.expert_load_max_over_mean;
  report.expert_ep_rank_load_max_over_mean = totals.expert_ep_rank_load_max_over_mean;
  report.peak_rss_mib = totals.peak_rss_mib;
  report.device_peak_mib = totals.device_peak_mib;
  report.exposed_comm_s = totals.exposed_comm_s / world.size();
  report.comm_s = totals.comm_s / world.size();
  report.expert_exposed_comm_s = totals.expert_exposed_comm_s / world.size();
  report.expert_comm_s = totals.expert_comm_s / world.size();
  report.expert_cross_node_bytes = static_cast<int64_t>(totals.expert_cross_node_bytes);
  report.expert_dispatch_bytes = static_cast<int64_t>(totals.expert_dispatch_bytes);
  report.expert_combine_bytes = static_cast<int64_t>(totals.expert_combine_bytes);
  report.expert_grad_bytes = static_cast<int64_t>(totals.expert_grad_bytes);
  // Model FLOPs utilisation: the planner's FLOP formulas over the devices' peak.
  if (recipe.run.peak_tflops > 0) {
    report.mfu = training_flops_per_token * tokens_per_step / report.step_s /
                 (world.size() * recipe.run.peak_tflops * 1e12);
  }
  step_time_total += report.step_s;
  summary.final_loss = report.loss;
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

  const bool eval_now =
      !stop_now && ((tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps);
  if (eval_now) {
    const EvalResult ev = evaluate_distributed(
        model, layout, world, groups.eval_pipeline(), recipe.data.path, tc.seq_len,
        tc.global_batch / recipe.parallel.micro_batches,
        tc.eval_batches * recipe.parallel.micro_batches);
    report.val_loss = ev.loss;
    report.val_tokens = ev.tokens;
    summary.final_val_loss = ev.loss;
  }

  const bool save_now = stop_now ||
                        (recipe.checkpoint.every_steps > 0 &&
                         step % recipe.checkpoint.every_steps == 0) ||
                        (step == tc.steps && recipe.checkpoint.final);
  if (save_now) {
    if (!checkpoints) throw std::logic_error("train: a checkpoint is due without MPI-IO");
    const data::LoaderState ls = loader->state();
    // The step's metrics line goes into the checkpoint: a run killed between saving and logging
    // it loses no line (truncate_metrics).
    const CheckpointMeta meta{step,         tokens_seen,
                              ls.epoch,     ls.cursor,
                              optimizer.steps_taken(), world.size(),
                              metrics_line(report).str()};
    const auto staged_at = Clock::now();
    staging.to_host();
    report.checkpoint_stall_s =
        seconds_since(staged_at) + checkpoints->Save(slices.owned(), meta, recipe,
                                                     (fs::path(recipe.run.dir) / "checkpoints")
                                                         .string(),
                                                     recipe.checkpoint.keep_last);
    staging.release();  // bf16 moments' fp32 copies: the writer took its own snapshot
  }
  if (metrics) metrics->write(metrics_line(report));

  if (step % recipe.logging.every_steps == 0 || step == tc.steps || eval_now || stop_now) {
    log << progress_line(report, tc.steps, world.size()) << "\n";
    log.flush();
  }
  if (save_now && !recipe.checkpoint.async) {
    report.checkpoint = summary.last_checkpoint = checkpoints->Wait();
    log << "tessera: saved " << summary.last_checkpoint << "\n";
  }
  if (stop_now) {
    stopped = true;
    report.stop_reason = summary.stop_reason =
        signal ? StopSignal::name(signal) : "a stop signal on another rank";
  }
  return report;
}

TrainSummary Trainer::Run::Finish() {
  if (checkpoints) summary.last_checkpoint = checkpoints->Wait();
  if (stopped) {
    log << "tessera: stopping after step " << step << " (" << summary.stop_reason << "): saved "
        << summary.last_checkpoint << "\n";
    log.flush();
    return summary;
  }
  if (recipe.checkpoint.async && !summary.last_checkpoint.empty()) {
    log << "tessera: saved " << summary.last_checkpoint << "\n";
  }
  if (is_root) {
    std::ofstream done(fs::path(recipe.run.dir) / "DONE");
    done << "step " << summary.steps << "\n";
  }
  log << "tessera: done, " << summary.steps << " steps";
  if (step_time_total > 0) {
    log << " in " << format("%.1f", step_time_total) << " s; waited for input "
        << format("%.4f", input_wait_total) << " s ("
        << format("%.3f", 100 * input_wait_total / step_time_total) << "% of step time)";
  }
  log << "\n";
  log.flush();
  return summary;
}

Trainer::Trainer(const Recipe& recipe, parallel::Comm& world, std::ostream& out,
                 const TrainOptions& options)
    : run_(std::make_unique<Run>(recipe, world, out, options)) {}

Trainer::~Trainer() {
  // A failed step may have left a checkpoint write in a collective the other ranks never join.
  if (run_ && run_->failed && run_->checkpoints) run_->checkpoints->Abandon();
}

bool Trainer::finished() const { return run_->stopped || run_->step >= run_->recipe.train.steps; }

int64_t Trainer::step() const { return run_->step; }

StepReport Trainer::Step() {
  if (run_->failed) throw std::logic_error("Trainer::Step: an earlier step failed");
  if (finished()) throw std::logic_error("Trainer::Step: the run is finished");
  try {
    return run_->Step();
  } catch (...) {
    run_->failed = true;
    throw;
  }
}

TrainSummary Trainer::Finish() {
  if (run_->failed) throw std::logic_error("Trainer::Finish: a step failed");
  if (!finished()) throw std::logic_error("Trainer::Finish: steps remain (call Step)");
  if (run_->finished_once) throw std::logic_error("Trainer::Finish: called twice");
  run_->finished_once = true;
  try {
    return run_->Finish();
  } catch (...) {
    run_->failed = true;
    throw;
  }
}

TrainSummary train(const Recipe& recipe, parallel::Comm& world, std::ostream& out,
                   const TrainOptions& options) {
  Trainer trainer(recipe, world, out, options);
  while (!trainer.finished()) trainer.Step();
  return trainer.Finish();
}

}  // namespace tessera::trainer
