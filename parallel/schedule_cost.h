// Cost model of a pipeline schedule: replays it (schedule_replay.h) with a time per instruction
// and reports the makespan and bubble, to compare with the closed forms and with the bubble the
// executor measures.
//
// Timing rules: every stage starts at 0 and runs its list in order; a compute instruction takes
// its cost (BW = B + W; FB = OpCosts::pair()); a send takes no time on its stage (it is posted
// asynchronously) and its data is usable `comm` later; a receive ends at the later of its stage
// being there and the data arriving. Bubble fraction = 1 - (compute summed over stages) /
// (pp × makespan): the share of stage-time spent idle, waiting for data, including exposed
// communication.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "parallel/schedule.h"

namespace tessera::parallel {

// Time of one instruction on one model chunk of one micro-batch.
struct OpCosts {
  double forward = 1.0;          // F
  double backward_input = 1.0;   // B
  double backward_weight = 1.0;  // W
  double comm = 0.0;             // latency from a send being posted to its data being usable
  // FB: an overlapped pair, F of one micro-batch with the full backward (B + W) of another.
  // <= 0: no overlap, F + B + W.
  double forward_backward = 0.0;
  double pair() const {
    return forward_backward > 0.0 ? forward_backward : forward + backward_input + backward_weight;
  }
};

struct SimulatedRun {
  double makespan = 0.0;
  double bubble_fraction = 0.0;
  std::vector<double> busy;  // compute time per stage
  // [stage][index] -> (start, end) of every instruction of the schedule.
  std::vector<std::vector<std::pair<double, double>>> spans;
};

// Throws ScheduleError if the schedule deadlocks (check it with check_schedule() for details).
SimulatedRun simulate_schedule(const Schedule& schedule, const OpCosts& costs = {});

// Costs that differ by stage and instruction (the planner's: stages hold different layers, an FB
// pair's overlap depends on its two chunks): `compute` is a compute instruction's time on `stage`,
// `comm` the time from a send on `stage` being posted to its data being usable at the receiver.
struct InstructionCosts {
  std::function<double(int stage, const Instruction& inst)> compute;
  std::function<double(int stage, const Instruction& send)> comm;
};
SimulatedRun simulate_schedule(const Schedule& schedule, const InstructionCosts& costs);

// The bubble fraction above: 1 - (busy summed over stages) / (stages x makespan); 0 for an empty
// run. For every simulator of SimulatedRun.
double bubble_fraction(const std::vector<double>& busy, double makespan);

// Closed-form bubbles and the bubble a schedule name predicts: schedule_registry.h.

// ASCII timeline of the simulated run, one row per stage, one cell per `quantum` of time (the
// smallest compute cost); each compute instruction prints its name padded with spaces over its
// span, idle time is '.'. For debugging and docs:
//   s0 |F0 F1 F2 F3 B0 W0 ...
std::string timeline_ascii(const Schedule& schedule, const OpCosts& costs = {});

}  // namespace tessera::parallel
