// The planner's predicted step as a Chrome trace (trainer/chrome_trace.h's format, as the trainer
// writes with logging.trace_steps), so a predicted and a measured step open side by side in
// chrome://tracing or ui.perfetto.dev: one process per pipeline stage (pid = the stage's first
// rank), each compute instruction of the replayed schedule as an event named as the schedule
// prints it ("F3", "FB3c0/2c1", ...), then the step's ZeRO and optimizer tail.
#pragma once

#include <string>

#include "cluster/plan.h"

namespace tessera::cluster {

std::string plan_chrome_trace(const Plan& plan);

}  // namespace tessera::cluster
