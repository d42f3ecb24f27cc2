// The schedule registry: one row per pipeline schedule, the single list that recipe validation,
// `--help`, the training log's bubble and the planner read (DESIGN.md "Pipeline schedules as
// data"). A row names the schedule, states its constraints (validate() throws ScheduleError
// naming the recipe key to blame), gives its placement without building the lists, builds them,
// and prices its bubble: in closed form where one is known, otherwise by simulating the lists
// with the cost model.
//
//   name        chunks/stage  constraints (beyond pp, m >= 1)       bubble fraction
//   gpipe       1             -                                     (pp-1)/(m+pp-1)
//   1f1b        1             -                                     (pp-1)/(m+pp-1)
//   interleaved v >= 2        m % pp == 0                           (pp-1)/(vm+pp-1)
//   zb1p        1             -                                     ZB-H1's (below)
//   dualpipev   2 (a V)       m >= 2pp                              simulated
//   dualpipe    2 (mirrored)  pp even, m even, m >= 2pp             simulated
// Every row also has a closed-form idle time (ScheduleInfo::idle_time).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "parallel/placement.h"
#include "parallel/schedule.h"
#include "parallel/schedule_cost.h"

namespace tessera::parallel {

struct ScheduleInfo {
  std::string name;
  std::string summary;      // one line for --help and docs
  std::string constraints;  // human-readable, e.g. "parallel.micro_batches >= 2 x parallel.pp"
  // Throws ScheduleError naming the recipe key (parallel.pp, parallel.micro_batches,
  // parallel.virtual_stages) when (pp, micro_batches, virtual_stages) does not fit.
  std::function<void(int pp, int micro_batches, int virtual_stages)> validate;
  // Where the virtual stages live (after validate()).
  std::function<Placement(int pp, int micro_batches, int virtual_stages)> placement;
  // The lists (after validate()).
  std::function<Schedule(int pp, int micro_batches, int virtual_stages)> make;
  // Closed-form bubble fraction; empty when the bubble is only simulated.
  std::function<double(int pp, int micro_batches, int virtual_stages, const OpCosts&)>
      closed_form_bubble;
  // Closed-form idle time per step of the stage that idles most (the DualPipe README's
  // "bubble", with B there the full backward B + W and F&B OpCosts::pair()): looped schedules
  // (pp-1)(F+B+W); zb1p (pp-1) max(F, B, F+B-W); dualpipev (pp-1)(F&B + B + W - 3W) and dualpipe
  // the same with pp/2. Exact for any costs for the looped ones; for dualpipe(v) exact when
  // F = B = W (the README's setting) with F&B between 2F and 3F, which the tests check against
  // the simulation.
  std::function<double(int pp, int micro_batches, int virtual_stages, const OpCosts&)> idle_time;
};

// Every schedule, in the order --help lists them.
const std::vector<ScheduleInfo>& schedule_registry();
// The row named `name`; ScheduleError naming parallel.schedule and the known names otherwise.
const ScheduleInfo& schedule_info(const std::string& name);
std::vector<std::string> schedule_names();
// "gpipe | 1f1b | ..." for help texts.
std::string schedule_names_joined(const std::string& separator = " | ");

// Validates, then builds the lists of parallel.schedule `name`.
Schedule make_schedule(const std::string& name, int pp, int micro_batches, int virtual_stages = 1);
// Validates, then returns the placement (no lists built).
Placement schedule_placement(const std::string& name, int pp, int micro_batches,
                             int virtual_stages = 1);

// The bubble fraction the registry predicts with zero communication cost: the closed form where
// the row has one, else simulate_schedule() of the built lists.
struct PredictedBubble {
  double fraction = 0.0;
  bool closed_form = false;
};
PredictedBubble predicted_bubble(const std::string& name, int pp, int micro_batches,
                                 int virtual_stages = 1, const OpCosts& costs = {});

}  // namespace tessera::parallel
