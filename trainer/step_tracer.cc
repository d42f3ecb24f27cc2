#include "trainer/step_tracer.h"

#include <algorithm>

#include "trainer/chrome_trace.h"

namespace tessera::trainer {

StepTracer::StepTracer(std::optional<StepRange> steps, parallel::Comm& world,
                       std::vector<parallel::Comm*> comms, const parallel::RankCoords& coords,
                       std::string run_dir)
    : steps_(steps), world_(world), run_dir_(std::move(run_dir)) {
  if (!steps_) return;
  for (parallel::Comm* c : comms) {
    if (c && std::find(comms_.begin(), comms_.end(), c) == comms_.end()) comms_.push_back(c);
  }
  process_name_ = "rank " + std::to_string(world.rank()) + " (pp=" + std::to_string(coords.pp_rank) +
                  ", dp=" + std::to_string(coords.dp_rank) + ", ep=" + std::to_string(coords.ep_rank) +
                  ")";
  recorder_ = std::make_shared<parallel::TraceRecorder>();
}

StepTracer::~StepTracer() {
  if (recording_) attach(false);
}

void StepTracer::attach(bool on) {
  for (parallel::Comm* c : comms_) c->set_trace(on ? recorder_ : nullptr);
}

void StepTracer::begin_step(int64_t step) {
  if (!steps_ || recording_ || !steps_->contains(step)) return;
  world_.barrier().wait();
  recorder_->set_origin();
  recorder_->clear();
  attach(true);
  recorder_->set_enabled(true);
  recording_ = true;
}

std::string StepTracer::end_step(int64_t step, bool run_ends) {
  if (!recording_ || (step < steps_->last && !run_ends)) return "";
  recorder_->set_enabled(false);
  attach(false);
  recording_ = false;
  const ChromeTraceFiles files = write_chrome_traces(world_, *recorder_, process_name_, run_dir_);
  recorder_->clear();
  return files.merged;
}

}  // namespace tessera::trainer
