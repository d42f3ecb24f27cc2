// The training loop of one process: data -> micro-batches -> forward/backward -> grad-norm clip
// -> AdamW -> MoE bias update -> metrics, evaluation and checkpoints, as the recipe says.
#pragma once

#include <iosfwd>

#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double final_val_loss = 0;  // NaN when no evaluation ran
  std::string last_checkpoint;
};

// Runs the whole job on the processes of `world` (every rank calls it). Data parallelism: world
// = parallel.dp replicas; each reads its share of every global batch, gradients, losses and MoE
// loads are summed over the replicas, so every replica takes the same step a single process
// would. Pipeline and expert parallelism are not implemented yet (a RecipeError on every rank).
// Every rank writes its progress lines to run.dir/logs/rank-<R>.log; world rank 0 also to `out`,
// and it alone writes metrics, evaluations and checkpoints.
// Throws on any error (bad layout, bad data, NaN loss, I/O).
TrainSummary train(const Recipe& recipe, parallel::Comm& world, std::ostream& out);

}  // namespace tessera::trainer
