// The training loop of one process of a parallel run: data -> pipeline schedule of micro-batches
// (forward/backward, expert all-to-alls) -> ZeRO-1 gradient reduction -> grad-norm clip -> AdamW
// on this rank's shard -> all-gather -> MoE bias update -> metrics, evaluation and checkpoints.
#pragma once

#include <iosfwd>
#include <memory>

#include "parallel/comm.h"
#include "trainer/checkpoint/env.h"
#include "trainer/recipe.h"
#include "trainer/step_report.h"
#include "trainer/stop_signal.h"

namespace tessera::trainer {

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double final_val_loss = 0;  // NaN when no evaluation ran
  std::string last_checkpoint;
  std::string stop_reason;  // "SIGUSR1", ... when a stop signal ended the run early; else empty
};

struct TrainOptions {
  // "" = start fresh; "auto" = continue from run.dir/checkpoints (the newest valid checkpoint; a
  // fresh start if there is none); else a checkpoint path (step, checkpoints or run directory).
  std::string resume;
  // With resume empty: a run.dir holding a previous run's checkpoints or metrics is refused
  // unless overwrite, which deletes them first (trainer/run_dir_claim.h).
  bool overwrite = false;
  // The process's stop-signal watcher (one per process: ranks run as threads share it); null:
  // train() installs its own for the run.
  const StopSignal* stop_signal = nullptr;
  // Every file operation of checkpoint saves and resume (trainer/checkpoint/env.h); never null.
  // REQUIRES: it outlives train() (an asynchronous write may still use it while an error ends
  // the job).
  CheckpointEnv* checkpoint_env = &CheckpointEnv::Posix();
};

// One process's part of a training run, step by step (every rank of `world` makes one and calls
// Step() the same number of times): construction does everything before the first step
// (checks, run.dir, model, optimizer, resume, data); each Step() trains one global batch and
// returns its numbers; Finish() waits for checkpoint writes and ends the run. train() below is
// the whole loop.
//
// The layout is the recipe's parallel section (world = pp x dp; ep divides dp): each rank holds
// one pipeline stage's model chunks and one slice of the routed experts, runs its stage's
// schedule through the pipeline executor on its replica's share of every global batch, and takes
// a ZeRO-1 optimizer step; losses, the gradient norm and MoE loads are global, so every layout
// takes the step a single process would. A bad layout is a RecipeError on every rank before any
// allocation. Every rank writes its progress lines to run.dir/logs/rank-<R>.log; world rank 0
// also to `out`, and it alone writes metrics. Evaluation runs distributed, like training
// (distributed_eval.h). Checkpoints: every rank writes its own slices collectively
// (checkpoint.h), every checkpoint.every_steps steps, at the end (checkpoint.final), and when
// SIGUSR1 or SIGTERM reaches any rank: then every rank finishes the step, saves, and finished()
// turns true (stop_reason says why). Finish() after the last step writes run.dir/DONE. Resuming
// on the same layout continues bit for bit; on another layout each rank reads its slices of the
// global tensors.
// World rank 0 holds run.dir's lock for the trainer's life; a run.dir in use by another run, or
// one holding a previous run when starting fresh without options.overwrite, is a RunDirRefused on
// every rank (trainer/run_dir_claim.h); run.cpu_threads above 4 x the machine's hardware threads
// is a RecipeError on every rank. Both come after the layout check, before anything is written.
// Throws on any error (bad layout, bad data, NaN loss, I/O, a damaged checkpoint to resume); a
// trainer whose Step() threw is spent: Step() and Finish() then throw std::logic_error, and its
// destructor does not wait for a checkpoint write in flight (the caller is to end every rank:
// parallel::abort_all). Checkpoints use MPI-IO: without them (checkpoint.every_steps 0,
// checkpoint.final false, no resume) any Comm will do, e.g. the fake communicator's threads;
// else world must be an MpiComm (std::logic_error otherwise).
class Trainer {
 public:
  // Collective over `world` (keeps a copy of the recipe). REQUIRES: world and out outlive the
  // trainer.
  Trainer(const Recipe& recipe, parallel::Comm& world, std::ostream& out,
          const TrainOptions& options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Collective: the next step (forward/backward of every micro-batch, optimizer step, metrics
  // line, evaluation and checkpoint when due). REQUIRES: !finished().
  StepReport Step();
  // Whether the run takes no more steps: train.steps are done, or a stop signal ended it.
  bool finished() const;
  // The last step taken (the resumed checkpoint's step before the first Step()).
  int64_t step() const;
  // Collective: waits for the checkpoint write in flight, writes run.dir/DONE when every step
  // was taken, and logs how the run ended. Call once, when finished().
  TrainSummary Finish();

 private:
  struct Run;
  std::unique_ptr<Run> run_;
};

// The whole job: a Trainer stepped until finished(), then Finish().
TrainSummary train(const Recipe& recipe, parallel::Comm& world, std::ostream& out,
                   const TrainOptions& options = {});

}  // namespace tessera::trainer
