// Does the recipe's layout fit this machine's memory? Checked in train() before anything is
// allocated, from the trainer's own allocation plan (memory_plan.h), so a model too large for
// the machine is a clear error naming the rank, the size, its largest term and the keys that
// set it, not a std::bad_alloc (or the kernel's OOM killer) minutes later.
//
// CPU ranks share their machine's memory: each rank's share is MemAvailable (/proc/meminfo) / the
// ranks on the node. On CUDA the plan is device memory and is not checked here yet.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/comm.h"
#include "trainer/memory_plan.h"

namespace tessera::trainer {

// Throws RecipeError when the largest plan in `plans` exceeds `available_bytes`, naming its rank,
// both sizes, its largest term and the recipe keys that size that term.
void check_memory_fits(const std::vector<RankMemory>& plans, int64_t available_bytes,
                       const std::string& available_what);

// Bytes the kernel reports available for new allocations (MemAvailable); -1 when unknown.
int64_t available_host_memory();

// Collective over `world`: on run.device cpu, every rank plans one rank per stage and checks the
// largest against the smallest per-rank share of any rank's machine (one all-reduce), so all
// ranks agree. ranks_per_node: ranks sharing this rank's machine.
void check_memory_fits(const Recipe& recipe, int ranks_per_node, parallel::Comm& world);

}  // namespace tessera::trainer
