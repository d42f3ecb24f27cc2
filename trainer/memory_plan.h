// Memory plan: what each rank of a recipe's layout holds on its device, by kind, computed from the
// recipe alone (no device, no allocation, no other process): `tessera train --dry-run`.
//   parameters     the values of the parameters this rank holds (its pipeline stage's layers,
//                  1/ep of the routed experts), padded as the ZeRO-1 regions are
//   gradients      the same size (fp32 gradient buffer)
//   optimizer      AdamW's two moments of this rank's ZeRO-1 shards (1/dp of the dense region,
//                  1/expert-dp of the expert region; 1/(2 dp) and 1/(2 expert-dp) under dualpipe,
//                  whose mirrored stage pairs share their shards), 4 bytes an element, 2 with
//                  optimizer.state_dtype bf16
//   activations    micro-batch contexts (the schedule's peak in flight per chunk) x the arena
//                  of one: saved activations, backward workspaces, boundary residuals; expert-side
//                  buffers sized for the worst-case routing; plus the one workspace all contexts
//                  share for buffers that live within one piece (precision fp8's fp32 copies of
//                  the activations it keeps in fp8: Model::MeasureChunk)
//   communication  pipeline boundary buffers: an upper bound from the schedule
//                  (PipelineExecutor::PlannedPoolBuffers)
//   exchange       the MoE blocks' packed bf16 / fp8 row exchanges, per micro-batch context at
//                  worst-case routing (MoeBlock::exchange_buffer_bytes; 0 in fp32 and in one
//                  process on the CPU)
// Not counted: the data loader's shard cache, communication libraries' own buffers, the binary;
// the fp32 moment mirrors of bf16 optimizer state that exist only while a checkpoint is written
// or read (trainer/checkpoint/staging.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

struct RankMemory {
  int rank = 0;
  int stage = 0, replica = 0, expert_slice = 0;
  int64_t parameters = 0, gradients = 0, optimizer = 0, activations = 0, communication = 0;
  int64_t exchange = 0;
  std::vector<int> contexts;            // per chunk: micro-batch contexts
  std::vector<int64_t> context_bytes;   // per chunk: bytes of one context's arena
  int64_t workspace_bytes = 0;          // the shared workspace (in activations)
  int64_t total() const {
    return parameters + gradients + optimizer + activations + communication + exchange;
  }
};

// Every rank of the recipe's layout (world = parallel.pp x parallel.dp). Throws RecipeError
// naming the key when the layout is impossible (as training would).
std::vector<RankMemory> plan_memory(const Recipe& recipe, kernels::Device device);
// Only the first rank of each stage (replica 0, expert slice 0): every rank of a stage plans the
// same sizes (experts split evenly), so this is the per-stage answer at a fraction of the cost of
// a large world (the planner's search).
std::vector<RankMemory> plan_memory_per_stage(const Recipe& recipe, kernels::Device device);

// The largest of a rank's kinds ("parameters", "gradients", "optimizer state", "activations",
// "communication buffers", "MoE exchange buffers"; the first on a tie) and
// the recipe keys that size it, for messages that say what to change.
struct MemoryTerm {
  std::string name;
  int64_t bytes = 0;
  std::string keys;
};
MemoryTerm largest_memory_term(const RankMemory& rank);

// A table, one line per rank, in MiB.
std::string format_memory_plan(const std::vector<RankMemory>& ranks);

}  // namespace tessera::trainer
