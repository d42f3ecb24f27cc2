// Generators: (pp stages, m micro-batches[, v model chunks per stage]) -> a Schedule whose lists
// include every send and receive, so the executor only follows them. Each receive sits right
// before the instruction that consumes it and each send right after the one that produces it
// (the latest wait and the earliest post, so no placement can deadlock where this one does not).
// Micro-batches are numbered 0..m-1; within every schedule each stage starts forwards and
// backwards of a chunk in increasing micro-batch order, so every channel is first-in first-out.
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
//   dualpipev:   DeepSeek's DualPipeV (deepseek-ai/DualPipe, dualpipev.py) on a V placement
//                (placement.h): stage r holds virtual stages r and 2pp-1-r; eight phases per
//                stage (V3-FACTS.md), the main one pairing F of one chunk with the full backward
//                of the other (FB); P W steps deferred per stage. REQUIRES m >= 2 pp.
//   dualpipe:    DeepSeek's DualPipe (dualpipe.py): two directions of pp stages, the first m/2
//                micro-batches from stage 0, the rest from stage pp-1 (bidirectional placement),
//                the DualPipeV phases with pp/2 "ranks" mirrored onto the second half of the
//                stages. REQUIRES pp even, m even, m >= 2 pp.
//
// All generators throw ScheduleError naming parallel.pp / parallel.micro_batches /
// parallel.virtual_stages when pp < 1, m < 1 or the schedule's own condition fails.
#pragma once

#include <string>

#include "parallel/schedule.h"

namespace tessera::parallel {

// The conditions the generators check (ScheduleError naming the recipe keys), for the registry
// to check without building: pp, m >= 1; interleaved's and the DualPipes' own conditions.
void check_schedule_sizes(const std::string& name, int pp, int micro_batches);
void check_interleaved(int pp, int micro_batches, int virtual_stages);
void check_dualpipev(int pp, int micro_batches);
void check_dualpipe(int pp, int micro_batches);

Schedule gpipe_schedule(int pp, int micro_batches);
Schedule one_f_one_b_schedule(int pp, int micro_batches);
Schedule interleaved_schedule(int pp, int micro_batches, int virtual_stages);
Schedule zb1p_schedule(int pp, int micro_batches);
Schedule dualpipev_schedule(int pp, int micro_batches);
Schedule dualpipe_schedule(int pp, int micro_batches);
// Evaluation: every micro-batch's forward through the virtual stages of its path, one
// micro-batch after another on each stage (forward_only; named "forward-only").
Schedule forward_only_schedule(const Placement& placement, int micro_batches);
// By name and recipe values: schedule_registry.h's make_schedule().

}  // namespace tessera::parallel
