#include "trainer/chunk_steps.h"

#include <deque>

namespace tessera::trainer {
namespace {

void run_one(int list, const ChunkStep& step, const StepObserver& observer) {
  if (observer) observer(list, step, true);
  step.run();
  if (observer) observer(list, step, false);
}

}  // namespace

void run_steps(const ChunkSteps& steps, const StepObserver& observer) {
  for (const ChunkStep& step : steps) run_one(0, step, observer);
}

void run_overlapped(const ChunkSteps& backward, const ChunkSteps& forward,
                    const StepObserver& observer) {
  const ChunkSteps* lists[2] = {&backward, &forward};
  size_t next[2] = {0, 0};
  std::deque<const ChunkStep*> deferred;  // the backward's weight steps not yet run
  int current = 0;
  auto has_next = [&](int l) { return next[l] < lists[l]->size(); };
  auto next_waits = [&](int l) { return has_next(l) && (*lists[l])[next[l]].waits; };
  while (has_next(0) || has_next(1)) {
    if (!has_next(current)) current ^= 1;  // the other finishes
    const int other = current ^ 1;
    const ChunkStep& step = (*lists[current])[next[current]];
    if (current == 0 && step.phase == 'W') {  // deferred: weight steps fill the waits below
      deferred.push_back(&step);
      ++next[current];
      continue;
    }
    if (step.waits) {
      if (has_next(other) && !next_waits(other)) {
        current = other;  // let this list's exchange travel while the other computes
        continue;
      }
      if (!deferred.empty()) {
        run_one(0, *deferred.front(), observer);
        deferred.pop_front();
        continue;
      }
    }
    ++next[current];
    run_one(current, step, observer);
    if (step.communicates && has_next(other)) current = other;
  }
  for (const ChunkStep* w : deferred) run_one(0, *w, observer);
}

}  // namespace tessera::trainer
