// Cost model of a pipeline schedule on CPU cores that the ranks time-share (more ranks x threads
// on a node than it has cores, as 4 ranks on a 2-core machine): simulate_schedule's timing rules
// (schedule_cost.h), but a compute instruction's cost is its time with every thread of its node
// computing, and it runs faster while fewer do. The OS shares a node's cores among its runnable
// threads, so a rank idle at a receive lends its core to the others: B computing threads get
// min(1, cores / B) of a core each, against min(1, cores / T) with all T threads of the node
// computing: on a node with T > cores an instruction runs min(T / cores, T / B) times as fast as
// its cost says (a stage at the speed of the slowest node its ranks are on). Measured on 4 ranks
// of bench-moe on 2 cores (pp2 dp2 ep2 1f1b): pieces run while one other rank computed took
// 0.55-0.75 of their time while three others did, against the 0.5 this model gives them; so it
// prices a bubble somewhat low.
#pragma once

#include <vector>

#include "parallel/schedule.h"
#include "parallel/schedule_cost.h"

namespace tessera::parallel {

// Where a schedule's ranks run: every stage has its ranks (its data-parallel replicas, which run
// the stage's list in step) on some nodes of `cores_per_node` cores each.
struct CoreSharing {
  std::vector<std::vector<int>> ranks_on_node;  // [stage][node]: the stage's ranks on the node
  int threads_per_rank = 1;                      // compute threads of a rank
  int cores_per_node = 1;
};

// The share of a core each of `threads` computing threads gets on `cores` cores (the OS sharing
// them evenly): min(1, cores / threads).
double core_share(double threads, double cores);

// Throws std::invalid_argument for a CoreSharing that does not fit the schedule (a row per
// stage, as many nodes in every row, counts >= 0 with at least one rank per stage, threads and
// cores >= 1); ScheduleError if the schedule deadlocks. With cores to spare on every node (no
// node with more threads than cores) it gives simulate_schedule's result.
SimulatedRun simulate_time_shared(const Schedule& schedule, const InstructionCosts& costs,
                                  const CoreSharing& sharing);

}  // namespace tessera::parallel
