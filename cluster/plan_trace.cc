#include "cluster/plan_trace.h"

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
        events, {"compute"}, pid,
        "predicted stage " + std::to_string(s) + " (rank " + std::to_string(pid) + ")"));
    sources.push_back("stage " + std::to_string(s));
  }
  return trainer::merge_chrome_traces(documents, sources);
}

}  // namespace tessera::cluster
