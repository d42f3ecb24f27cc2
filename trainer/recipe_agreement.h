// Every rank of a run must train the same recipe. A rank started with another file or another
// --set posts other collectives (other sizes, other counts) and the job dies inside MPI with
// nothing naming the cause, so the trainer checks first.
#pragma once

#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Collective over `world` (one all-gather of a hash; more only when they differ). Throws the same
// RecipeError on every rank when some rank's resolved recipe differs from world rank 0's, naming
// the first key that differs, both values and both world ranks. data.path, data.prefetch and
// run.cpu_threads may differ (a node-local copy of the dataset, a node's own core count).
void check_same_recipe(const Recipe& recipe, parallel::Comm& world);

}  // namespace tessera::trainer
