// Generators: (pp stages, m micro-batches[, v model chunks per stage]) -> a Schedule whose lists
// include every send and receive, so the executor only follows them. Each receive sits right
// before the instruction that consumes it and each send right after the one that produces it
// (the latest wait and the earliest post, so no placement can deadlock where this one does not).
// Micro-batches are numbered 0..m-1; within every schedule each stage starts forwards and
// backwards in increasing micro-batch order, so every channel is first-in first-out.
//
//   gpipe:       all forwards (F0..Fm-1), then all full backwards (BW0..BWm-1).
//   1f1b:        PipeDream-flush / Megatron: stage s runs min(pp-1-s, m) warm-up forwards, then
//                alternates F and BW, then drains the remaining BW. At most pp - s micro-batches
//                in flight on stage s.
//   interleaved: Megatron's interleaved 1F1B with v >= 2 chunks per stage: micro-batches go in
//                groups of pp, each group through chunk 0, then chunk 1, ...; backwards visit
//                chunks in reverse. Stage s warms up with min(2(pp-1-s) + (v-1)pp, m v) forwards,
//                then alternates F and BW. REQUIRES m % pp == 0.
//   zb1p:        ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", 2023): the 1F1B order of F
//                and B (input gradient), with stage s running the W of micro-batch j right after
//                the B of micro-batch j + s (and the last s W after its final B). The last stage,
//                which idles longest at the end, defers the most; every stage keeps at most pp
//                micro-batches' activations, the same peak as 1F1B's stage 0.
//
// All generators throw ScheduleError naming parallel.pp / parallel.micro_batches /
// parallel.virtual_stages when pp < 1, m < 1 or the schedule's own condition fails.
#pragma once

#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace tessera::parallel {

Schedule gpipe_schedule(int pp, int micro_batches);
Schedule one_f_one_b_schedule(int pp, int micro_batches);
Schedule interleaved_schedule(int pp, int micro_batches, int virtual_stages);
Schedule zb1p_schedule(int pp, int micro_batches);

// The names parallel.schedule accepts: gpipe, 1f1b, interleaved, zb1p, dualpipe, dualpipev.
const std::vector<std::string>& schedule_names();

// Builds the schedule parallel.schedule names. virtual_stages must be 1 except for "interleaved"
// (>= 2). "dualpipe" and "dualpipev" are recognised but throw ScheduleError "not implemented yet";
// other names throw ScheduleError listing the known ones.
Schedule make_schedule(const std::string& name, int pp, int micro_batches, int virtual_stages = 1);

}  // namespace tessera::parallel
