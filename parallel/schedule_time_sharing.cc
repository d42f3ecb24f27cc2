#include "parallel/schedule_time_sharing.h"

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

namespace tessera::parallel {
namespace {

void check_sharing(const CoreSharing& sharing, int pp) {
  const auto fail = [](const std::string& why) {
    throw std::invalid_argument("time-shared schedule simulation: " + why);
  };
  if (static_cast<int>(sharing.ranks_on_node.size()) != pp) {
    fail(std::to_string(sharing.ranks_on_node.size()) + " rows of ranks per node for " +
         std::to_string(pp) + " stages");
  }
  if (sharing.threads_per_rank < 1 || sharing.cores_per_node < 1) {
    fail("threads per rank " + std::to_string(sharing.threads_per_rank) + " and cores per node " +
         std::to_string(sharing.cores_per_node) + " must be >= 1");
  }
  for (int s = 0; s < pp; ++s) {
    const std::vector<int>& row = sharing.ranks_on_node[static_cast<size_t>(s)];
    if (row.size() != sharing.ranks_on_node.front().size()) {
      fail("stage " + std::to_string(s) + " has " + std::to_string(row.size()) +
           " nodes, stage 0 " + std::to_string(sharing.ranks_on_node.front().size()));
    }
    int ranks = 0;
    for (int n : row) {
      if (n < 0) fail("stage " + std::to_string(s) + " has a negative rank count");
      ranks += n;
    }
    if (ranks == 0) fail("stage " + std::to_string(s) + " has no ranks");
  }
}

}  // namespace

double core_share(double threads, double cores) {
  return threads <= cores ? 1.0 : cores / threads;
}

SimulatedRun simulate_time_shared(const Schedule& schedule, const InstructionCosts& costs,
                                  const CoreSharing& sharing) {
  const int pp = static_cast<int>(schedule.per_stage.size());
  check_sharing(sharing, pp);
  const size_t nodes = pp > 0 ? sharing.ranks_on_node.front().size() : 0;
  const double cores = sharing.cores_per_node;
  std::vector<double> full(nodes, 0.0);  // threads per node, every rank computing
  for (const std::vector<int>& row : sharing.ranks_on_node) {
    for (size_t n = 0; n < nodes; ++n) full[n] += row[n] * sharing.threads_per_rank;
  }

  SimulatedRun run;
  run.busy.assign(pp, 0.0);
  run.spans.resize(pp);
  for (int s = 0; s < pp; ++s) run.spans[s].resize(schedule.per_stage[s].size());
  std::vector<size_t> next(pp, 0);       // the instruction each stage is at
  std::vector<double> remaining(pp, -1);  // cost left of the compute it runs; < 0: none
  std::vector<double> since(pp, 0.0);     // when the stage reached its instruction
  std::map<MessageKey, double> arrival;   // when a posted message's data is usable
  // When the data of the receive stage s is at arrives; null while its send is not posted.
  const auto arrival_at = [&](int s) -> const double* {
    const auto key = message_key(schedule, s, schedule.per_stage[s][next[s]]);
    const auto it = key ? arrival.find(*key) : arrival.end();
    return it == arrival.end() ? nullptr : &it->second;
  };
  double now = 0.0;

  for (;;) {
    // Every stage runs as far as it can at `now`: sends post, receives whose data is there end,
    // compute starts (zero-cost compute ends at once).
    for (bool moved = true; moved;) {
      moved = false;
      for (int s = 0; s < pp; ++s) {
        const std::vector<Instruction>& list = schedule.per_stage[s];
        while (remaining[s] < 0 && next[s] < list.size()) {
          const Instruction& inst = list[next[s]];
          if (is_send(inst.op)) {
            if (const auto key = message_key(schedule, s, inst)) {
              arrival[*key] = now + costs.comm(s, inst);
            }
          } else if (is_recv(inst.op)) {
            const double* at = arrival_at(s);
            if (!at || *at > now) break;  // blocked: its data comes later
          } else {
            const double cost = costs.compute(s, inst);
            if (cost > 0.0) {
              remaining[s] = cost;
              break;
            }
          }
          run.spans[s][next[s]] = {since[s], now};
          since[s] = now;
          ++next[s];
          moved = true;
        }
      }
    }
    // Each computing stage's speed: its nodes' computing threads against all of theirs.
    std::vector<double> computing(nodes, 0.0);
    for (int s = 0; s < pp; ++s) {
      if (remaining[s] < 0) continue;
      for (size_t n = 0; n < nodes; ++n) {
        computing[n] += sharing.ranks_on_node[s][n] * sharing.threads_per_rank;
      }
    }
    std::vector<double> rate(pp, 0.0);
    double step = std::numeric_limits<double>::infinity();  // to the next event
    for (int s = 0; s < pp; ++s) {
      if (remaining[s] < 0) continue;
      rate[s] = std::numeric_limits<double>::infinity();
      for (size_t n = 0; n < nodes; ++n) {
        if (sharing.ranks_on_node[s][n] > 0) {
          rate[s] = std::min(rate[s], core_share(computing[n], cores) / core_share(full[n], cores));
        }
      }
      step = std::min(step, remaining[s] / rate[s]);
    }
    bool waiting = false;
    for (int s = 0; s < pp; ++s) {
      if (remaining[s] >= 0 || next[s] >= schedule.per_stage[s].size()) continue;
      waiting = true;  // at a receive
      if (const double* at = arrival_at(s)) step = std::min(step, *at - now);
    }
    if (step == std::numeric_limits<double>::infinity()) {
      if (waiting) {
        throw ScheduleError("schedule '" + schedule.name +
                            "' deadlocks; run check_schedule() for the blocked instructions");
      }
      break;  // every stage ran its whole list
    }
    now += step;
    for (int s = 0; s < pp; ++s) {
      if (remaining[s] < 0) continue;
      // The stage that set the step ends; so do those due within rounding of it.
      if (remaining[s] / rate[s] <= step * (1.0 + 1e-12)) {
        run.spans[s][next[s]] = {since[s], now};
        run.busy[s] += now - since[s];
        since[s] = now;
        ++next[s];
        remaining[s] = -1;
      } else {
        remaining[s] -= rate[s] * step;
      }
    }
  }
  run.makespan = pp > 0 ? *std::max_element(since.begin(), since.end()) : 0.0;
  run.bubble_fraction = bubble_fraction(run.busy, run.makespan);
  return run;
}

}  // namespace tessera::parallel
