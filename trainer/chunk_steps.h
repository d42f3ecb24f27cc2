// Chunk steps: a model chunk's forward or backward for one micro-batch as a flat list of steps
// (each block's pieces, with the glue around them: embedding, boundary copies, head), and the
// overlapped FB pair that interleaves two such lists (DESIGN.md "Layers: explicit forward and
// backward, in pieces"; DeepSeek-V3 §3.2.1).
//
// Overlap policy of run_overlapped(): the backward list starts (V3's order opens with the
// backward's combine). Its weight-gradient steps (phase 'W') are deferred: they are the filler.
// A list hands over to the other
//   - right after one of its steps posted an exchange (communicates), so the other list's
//     compute (and its own next post) runs while the exchange travels, and
//   - right before a step that waits for one of its exchanges, unless the other list's next
//     step waits too: then the oldest deferred weight step runs, and only when none is left
//     does the waiting step run (and wait);
// when one list is done the other finishes, and the weight steps still deferred run last. So
// every exchange of one micro-batch is in flight while the other computes, as far as the lists
// allow. The decisions depend only on the lists, never on timing, so every rank of an EP group
// (same schedule, same chunk structure) posts its collectives in the same order; each list's
// waits are for its own earlier posts, so the pair cannot deadlock. Each list keeps its own
// order (a weight step still runs after its block's input-gradient steps and touches only that
// block's context and parameter gradients), and the two micro-batches share no buffers
// (separate contexts) and write disjoint state (the forward no gradients, the backward each
// parameter's gradient once), so the results equal the sequential F-then-B bit for bit.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace tessera::trainer {

struct ChunkStep {
  std::string name;  // the piece ("attention", "dispatch", ...) or glue ("input", "output", ...)
  bool communicates = false;           // posts an exchange (its consumer waits for it)
  std::function<void()> run;
  char phase = 'F';  // 'F' forward, 'B' input gradient, 'W' weight gradient
  int layer = -1;    // the model layer of the block; -1 for glue
  bool waits = false;  // first waits for an exchange an earlier step of its list posted
};
using ChunkSteps = std::vector<ChunkStep>;

// Told before and after each step runs: which list (0 = the only one, or the backward of an FB
// pair; 1 = the FB pair's forward) and the step. For traces; may be empty.
using StepObserver = std::function<void(int list, const ChunkStep& step, bool begin)>;

void run_steps(const ChunkSteps& steps, const StepObserver& observer = {});

// The FB pair (policy above). Returns nothing; exceptions from a step propagate at once (the
// other list's posted exchanges stay owned by their Works).
void run_overlapped(const ChunkSteps& backward, const ChunkSteps& forward,
                    const StepObserver& observer = {});

}  // namespace tessera::trainer
