#include "cluster/plan_trace.h"

#include <algorithm>

#include "trainer/chrome_trace.h"

namespace tessera::cluster {

std::string plan_chrome_trace(const Plan& plan) {
  const parallel::Schedule& schedule = plan.schedule_lists;
  std::vector<std::string> documents, sources;
  for (int s = 0; s < schedule.pp(); ++s) {
    std::vector<parallel::TraceEvent> events;
    const auto& list = schedule.per_stage[static_cast<size_t>(s)];
    for (size_t i = 0; i < list.size(); ++i) {
      const parallel::Instruction& inst = list[i];
      if (!parallel::is_compute(inst.op)) continue;
      const auto [start, end] = plan.run.spans[static_cast<size_t>(s)][i];
      events.push_back({parallel::to_string(inst, schedule.chunks() > 1), 0, start * 1e6,
                        (end - start) * 1e6,
                        {{"micro_batch", inst.micro_batch}, {"chunk", inst.chunk}}});
      if (plan.pieces.empty()) continue;
      // Its steps, as the trainer's traces record them: list 1 of an FB pair is the forward.
      for (const PieceSpan& p : plan.pieces[static_cast<size_t>(s)][i]) {
        const bool backward_half = inst.op == parallel::Op::kForwardBackward && p.list == 0;
        // Inside the instruction's span (the sums differ in the last bits), so the pieces nest.
        const double begin_us = std::min((start + p.start) * 1e6, end * 1e6);
        const double end_us = p.lane == 0 ? std::min((start + p.end) * 1e6, end * 1e6)
                                          : (start + p.end) * 1e6;
        events.push_back(
            {p.name, p.lane, begin_us, std::max(0.0, end_us - begin_us),
             {{"micro_batch", backward_half ? inst.micro_batch_b : inst.micro_batch},
              {"chunk", backward_half ? inst.chunk_b : inst.chunk},
              {"layer", p.layer}}});
      }
    }
    double t = plan.pipeline_s;
    events.push_back({"ZeRO reduce-scatter tail + all-gather", 0, t * 1e6, plan.zero_s * 1e6, {}});
    t += plan.zero_s;
    events.push_back({"optimizer", 0, t * 1e6, plan.optimizer_s * 1e6, {}});
    t += plan.optimizer_s;
    events.push_back({"step tail (zero grads, loads, scalars)", 0, t * 1e6,
                      plan.step_tail_s * 1e6, {}});
    const int pid = s * plan.dp;
    documents.push_back(trainer::chrome_trace_json(
        events, {"compute", "comm:ep", "comm:node"}, pid,
        "predicted stage " + std::to_string(s) + " (rank " + std::to_string(pid) + ")"));
    sources.push_back("stage " + std::to_string(s));
  }
  return trainer::merge_chrome_traces(documents, sources);
}

}  // namespace tessera::cluster
