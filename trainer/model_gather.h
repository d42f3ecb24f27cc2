// Collects the whole model's parameter values of a parallel run on world rank 0, which evaluates
// it (a serial gather, enough for the validation of CPU-sized runs; checkpoints do not use it:
// every rank writes its own slices). Each tensor comes from one holder: a dense parameter from
// data-parallel replica 0 of the stage that holds its layer, each expert slice from
// expert-data-parallel replica 0 of its EP rank. Collective over `world`.
#pragma once

#include <vector>

#include "parallel/comm.h"
#include "trainer/param_table.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

// `local`: this rank's table. `whole` (world rank 0 only; null elsewhere): the whole model's
// table, which receives every parameter value.
void gather_model(parallel::Comm& world, const ParallelLayout& layout, const Recipe& recipe,
                  ParamTable& local, ParamTable* whole);

}  // namespace tessera::trainer
