// The training loop of one process: data -> micro-batches -> forward/backward -> grad-norm clip
// -> AdamW -> MoE bias update -> metrics, evaluation and checkpoints, as the recipe says.
#pragma once

#include <iosfwd>

#include "trainer/recipe.h"

namespace tessera::trainer {

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double final_val_loss = 0;  // NaN when no evaluation ran
  std::string last_checkpoint;
};

// Runs the whole job. Progress lines go to `out`. Throws on any error (bad data, NaN loss, I/O).
TrainSummary train(const Recipe& recipe, std::ostream& out);

}  // namespace tessera::trainer
