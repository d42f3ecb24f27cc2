#include "parallel/schedule_cost.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "parallel/schedule_replay.h"

namespace tessera::parallel {
namespace {

double compute_cost(const Instruction& inst, const OpCosts& c) {
  switch (inst.op) {
    case Op::kForward: return c.forward;
    case Op::kBackward: return c.backward_input + c.backward_weight;
    case Op::kBackwardInput: return c.backward_input;
    case Op::kBackwardWeight: return c.backward_weight;
    case Op::kForwardBackward: return c.pair();
    default: return 0.0;
  }
}

}  // namespace

SimulatedRun simulate_schedule(const Schedule& schedule, const OpCosts& costs) {
  return simulate_schedule(
      schedule, InstructionCosts{[&costs](int, const Instruction& inst) { return compute_cost(inst, costs); },
                                 [&costs](int, const Instruction&) { return costs.comm; }});
}

SimulatedRun simulate_schedule(const Schedule& schedule, const InstructionCosts& costs) {
  const int pp = static_cast<int>(schedule.per_stage.size());
  SimulatedRun run;
  run.busy.assign(pp, 0.0);
  run.spans.resize(pp);
  for (int s = 0; s < pp; ++s) run.spans[s].resize(schedule.per_stage[s].size());
  std::vector<double> now(pp, 0.0);
  std::map<MessageKey, double> arrival;  // when a posted message's data is usable

  const ReplayResult r = replay_schedule(schedule, [&](int s, int i) {
    const Instruction& inst = schedule.per_stage[s][i];
    const double start = now[s];
    double end = start;
    if (is_send(inst.op)) {
      if (const auto key = message_key(schedule, s, inst)) arrival[*key] = start + costs.comm(s, inst);
    } else if (is_recv(inst.op)) {
      end = std::max(start, arrival.at(*message_key(schedule, s, inst)));
    } else {
      const double t = costs.compute(s, inst);
      end = start + t;
      run.busy[s] += t;
    }
    run.spans[s][i] = {start, end};
    now[s] = end;
  });
  if (!r.completed) {
    throw ScheduleError("schedule '" + schedule.name +
                        "' deadlocks; run check_schedule() for the blocked instructions");
  }
  run.makespan = pp > 0 ? *std::max_element(now.begin(), now.end()) : 0.0;
  run.bubble_fraction = bubble_fraction(run.busy, run.makespan);
  return run;
}

double bubble_fraction(const std::vector<double>& busy, double makespan) {
  double total = 0.0;
  for (double b : busy) total += b;
  return makespan > 0.0 ? 1.0 - total / (static_cast<double>(busy.size()) * makespan) : 0.0;
}

std::string timeline_ascii(const Schedule& schedule, const OpCosts& costs) {
  const SimulatedRun run = simulate_schedule(schedule, costs);
  double quantum = 0.0;
  for (double c : {costs.forward, costs.backward_input, costs.backward_weight}) {
    if (c > 0.0 && (quantum == 0.0 || c < quantum)) quantum = c;
  }
  if (quantum == 0.0) return "";
  const auto cell = [quantum](double t) { return static_cast<int>(std::lround(t / quantum)); };
  // Cell width: wide enough that every instruction's name fits its span with a space after it.
  int width = 1;
  for (size_t s = 0; s < schedule.per_stage.size(); ++s) {
    for (size_t i = 0; i < schedule.per_stage[s].size(); ++i) {
      const Instruction& inst = schedule.per_stage[s][i];
      if (!is_compute(inst.op)) continue;
      const int cells = std::max(1, cell(run.spans[s][i].second) - cell(run.spans[s][i].first));
      const int len = static_cast<int>(to_string(inst, schedule.chunks() > 1).size()) + 1;
      width = std::max(width, (len + cells - 1) / cells);
    }
  }
  const int n_cells = cell(run.makespan);
  std::string out;
  for (size_t s = 0; s < schedule.per_stage.size(); ++s) {
    std::string row(static_cast<size_t>(n_cells) * width, '.');
    for (size_t i = 0; i < schedule.per_stage[s].size(); ++i) {
      const Instruction& inst = schedule.per_stage[s][i];
      if (!is_compute(inst.op)) continue;
      const size_t begin = static_cast<size_t>(cell(run.spans[s][i].first)) * width;
      const size_t end = std::min(row.size(), static_cast<size_t>(cell(run.spans[s][i].second)) * width);
      if (begin >= end) continue;
      const std::string label = to_string(inst, schedule.chunks() > 1);
      for (size_t k = begin; k < end; ++k) {
        row[k] = k - begin < label.size() ? label[k - begin] : ' ';
      }
    }
    out += "s" + std::to_string(s) + " |" + row + "|\n";
  }
  return out;
}

}  // namespace tessera::parallel
