// Collects the whole model of a parallel run on world rank 0 (a serial gather, enough for the
// checkpoints and evaluations of CPU-sized runs; parallel HDF5 hyperslab writes replace it for
// checkpoints). Each tensor comes from one holder: a dense parameter from data-parallel replica 0
// of the stage that holds its layer, each expert slice from expert-data-parallel replica 0 of
// its EP rank. Collective over `world`.
#pragma once

#include <vector>

#include "parallel/comm.h"
#include "trainer/param_table.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

// `local`: this rank's table. exp_avg / exp_avg_sq: full moment buffers aligned with `local`
// (ZeroOptimizer::GatherMoments), or both null to gather values only. `whole` (world rank 0 only;
// null elsewhere): the whole model's table, which receives every tensor (and the moments when
// given: REQUIRES whole->has_moments()).
void gather_model(parallel::Comm& world, const ParallelLayout& layout, const Recipe& recipe,
                  ParamTable& local, const std::vector<float>* exp_avg,
                  const std::vector<float>* exp_avg_sq, ParamTable* whole);

}  // namespace tessera::trainer
