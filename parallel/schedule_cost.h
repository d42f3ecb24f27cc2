// Cost model of a pipeline schedule: replays it (schedule_replay.h) with a time per instruction
// and reports the makespan and bubble, to compare with the closed forms and with the bubble the
// executor measures.
//
// Timing rules: every stage starts at 0 and runs its list in order; a compute instruction takes
// its cost (BW = B + W; FB = F + B + W); a send takes no time on its stage (it is posted
// asynchronously) and its data is usable `comm` later; a receive ends at the later of its stage
// being there and the data arriving. Bubble fraction = 1 - (compute summed over stages) /
// (pp × makespan): the share of stage-time spent idle, waiting for data, including exposed
// communication.
#pragma once

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

// Closed-form bubble fraction with zero communication cost, for pp stages, m micro-batches and
// v chunks per stage:
//   gpipe, 1f1b:  (pp-1) / (m + pp-1)                 (any costs: the bubble is (pp-1)(F+B+W))
//   interleaved:  (pp-1) / (v m + pp-1)               (the bubble shrinks by v)
//   zb1p:         I / (I + m(F+B+W)) with idle time I = (pp-1) max(F, B, F+B-W), for m >= pp:
//                 the longest of three waits: the last stage for its first activation ((pp-1)F),
//                 stage 0 for its first gradient ((pp-1)B), and the steady state, where a W no
//                 longer covers an F+B hop ((pp-1)(F+B-W), ZB-H1's bubble in the paper, which
//                 assumes W <= F, B).
// Throws ScheduleError for other names.
double theoretical_bubble(const std::string& schedule_name, int pp, int micro_batches,
                          int virtual_stages = 1, const OpCosts& costs = {});

// ASCII timeline of the simulated run, one row per stage, one cell per `quantum` of time (the
// smallest compute cost); each compute instruction prints its name padded with spaces over its
// span, idle time is '.'. For debugging and docs:
//   s0 |F0 F1 F2 F3 B0 W0 ...
std::string timeline_ascii(const Schedule& schedule, const OpCosts& costs = {});

}  // namespace tessera::parallel
