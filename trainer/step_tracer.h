// StepTracer: the training loop's side of logging.trace_steps (README "Tracing a step"). It owns
// this process's parallel::TraceRecorder, switches it on for the chosen optimizer steps, attaches
// it to the run's communicators meanwhile (their operations become "comm:<name>" events), and
// after the last traced step writes the Chrome trace files (trainer/chrome_trace.h).
//
// The loop calls begin_step / end_step on every rank for every step; both are collective on
// the traced steps only (the recipe, hence the range, is the same on every rank). Compute code
// records into recorder() with parallel::TraceSpan.
//
// Thread-safety: begin_step / end_step from the loop's thread, which must be the only one
// posting on the communicators at those moments.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/rank_grid.h"
#include "parallel/trace_recorder.h"
#include "trainer/step_range.h"

namespace tessera::trainer {

class StepTracer {
 public:
  // steps: std::nullopt = off (nothing is recorded, no communicator is touched). comms: the
  // communicators whose operations are recorded (nulls and repeats are skipped); they must
  // outlive the tracer. `coords` name the process in the trace: "rank R (pp=.., dp=.., ep=..)".
  StepTracer(std::optional<StepRange> steps, parallel::Comm& world,
             std::vector<parallel::Comm*> comms, const parallel::RankCoords& coords,
             std::string run_dir);
  ~StepTracer();  // detaches the recorder from the communicators
  StepTracer(const StepTracer&) = delete;
  StepTracer& operator=(const StepTracer&) = delete;

  // Where compute code records (TraceSpan); null when logging.trace_steps is off.
  parallel::TraceRecorder* recorder() const { return recorder_.get(); }

  // Before step `step`'s work. On the first traced step reached: a world barrier, the
  // recorder's clock origin taken right after it (so the ranks' times line up to the barrier's
  // skew), then recording starts.
  void begin_step(int64_t step);
  // After step `step`'s work; `run_ends` when no step follows (last step, or a stop signal).
  // After the last traced step (or at the run's end while recording): recording stops and the
  // trace files are written (collective). Returns run_dir/trace.json on world rank 0 when it was
  // written, else "".
  std::string end_step(int64_t step, bool run_ends);

 private:
  void attach(bool on);

  std::optional<StepRange> steps_;
  parallel::Comm& world_;
  std::vector<parallel::Comm*> comms_;
  std::string process_name_;
  std::string run_dir_;
  std::shared_ptr<parallel::TraceRecorder> recorder_;
  bool recording_ = false;
};

}  // namespace tessera::trainer
