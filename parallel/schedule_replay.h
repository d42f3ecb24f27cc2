// Replays every stage's list of a schedule under the communication semantics of schedule.h:
// stages run their lists in order, sends never block, a receive blocks its stage until the send
// with the same MessageKey has been posted (each posted send satisfies one receive). Compute
// instructions never block here; their local dependencies are the checker's business.
// The checker (dependency rules, deadlock) and the cost model (timing) are both built on it.
#pragma once

#include <functional>
#include <vector>

#include "parallel/schedule.h"

namespace tessera::parallel {

struct ReplayResult {
  bool completed = false;  // every stage ran its whole list
  // Per stage: index of the receive it is blocked at, or -1 when it finished. When !completed,
  // the blocked stages wait on each other (or on sends that never come): a deadlock.
  std::vector<int> blocked_at;
};

// Calls visit(stage, index) once per executed instruction, in an order that respects the
// semantics above (a send is visited before any receive it satisfies). A receive whose message
// has no key (message_key() is nullopt) can never be satisfied.
// REQUIRES: schedule.per_stage.size() == schedule.pp.
ReplayResult replay_schedule(const Schedule& schedule,
                             const std::function<void(int stage, int index)>& visit);

}  // namespace tessera::parallel
