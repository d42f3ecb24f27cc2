#include "parallel/schedule_replay.h"

#include <map>

namespace tessera::parallel {

ReplayResult replay_schedule(const Schedule& schedule,
                             const std::function<void(int stage, int index)>& visit) {
  const int pp = static_cast<int>(schedule.per_stage.size());
  std::vector<size_t> pos(pp, 0);
  std::map<MessageKey, int> posted;  // sends posted and not yet received
  bool progress = true;
  while (progress) {
    progress = false;
    // Each stage runs until it finishes or blocks; sweeping until nothing moves reaches the same
    // final state as any interleaving, because only receives block and they only wait for sends.
    for (int s = 0; s < pp; ++s) {
      const auto& list = schedule.per_stage[s];
      while (pos[s] < list.size()) {
        const Instruction& inst = list[pos[s]];
        if (is_recv(inst.op)) {
          const auto key = message_key(schedule, s, inst);
          if (!key) break;
          auto it = posted.find(*key);
          if (it == posted.end() || it->second == 0) break;
          --it->second;
        } else if (is_send(inst.op)) {
          if (const auto key = message_key(schedule, s, inst)) ++posted[*key];
        }
        visit(s, static_cast<int>(pos[s]));
        ++pos[s];
        progress = true;
      }
    }
  }
  ReplayResult result;
  result.completed = true;
  result.blocked_at.assign(pp, -1);
  for (int s = 0; s < pp; ++s) {
    if (pos[s] < schedule.per_stage[s].size()) {
      result.completed = false;
      result.blocked_at[s] = static_cast<int>(pos[s]);
    }
  }
  return result;
}

}  // namespace tessera::parallel
