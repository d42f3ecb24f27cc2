// The schedule checker: replays any Schedule (generated or hand-made) under the communication
// semantics of schedule.h and reports everything that would make an executor hang or compute
// the wrong thing. Rules, for every stage s, micro-batch mb and chunk c (virtual stage vs):
//   - shape: per_stage has pp lists; micro-batch, chunk and peer fields are in range;
//   - communication: every send and receive names the stage holding the neighbouring virtual
//     stage (the schedule's Placement) as its peer, never itself, and carries data that exists (no activation out of the
//     last virtual stage, no gradient out of the first); every message is sent exactly once and
//     received exactly once;
//   - deadlock: replaying all lists (receives wait for their send) runs every list to its end;
//     otherwise each blocked stage's instruction is reported;
//   - F(mb, c) runs exactly once, after its input arrived: the RA before it, or on the same stage
//     the F of the previous virtual stage (pp = 1 with chunks > 1);
//   - the backward of (mb, c) (BW, B, or FB's backward half) runs exactly once, after F(mb, c)
//     and after its output gradient arrived (RG, or locally the next virtual stage's backward);
//     the last virtual stage starts the backward from the loss and needs no gradient;
//   - W(mb, c) runs exactly once (inside BW/FB or as W), after B(mb, c);
//   - SA(mb, c) runs after F(mb, c); SG(mb, c) after the backward of (mb, c);
//   - optionally (fifo_channels) every channel (source stage, destination stage, activation or
//     gradient) delivers in the order it was sent, as untagged NCCL point-to-point requires.
//   - a forward_only schedule (evaluation) holds only F, RA and SA, and needs no backward;
//   - every micro-batch runs only on the chunks of its path (DualPipe: one direction each).
// Also measured: the most (mb, chunk) activations alive at once on each stage (from F to W).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace tessera::parallel {

struct CheckOptions {
  // Also require first-in first-out order on every channel. Default: false (tagged MPI matching).
  bool fifo_channels = false;
  // Errors listed before the rest are counted in one line. Default: 32.
  size_t max_errors = 32;
};

struct CheckResult {
  bool ok = false;
  std::vector<std::string> errors;  // each names the stage, instruction index and problem
  std::vector<int> peak_activations;  // per stage; filled when the replay could run
  std::string summary() const;  // "ok" or the errors, one per line
};

CheckResult check_schedule(const Schedule& schedule, const CheckOptions& options = {});

}  // namespace tessera::parallel
