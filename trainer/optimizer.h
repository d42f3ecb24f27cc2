// AdamW over a ParamTable (decoupled weight decay on parameters whose descriptor asks for it),
// with global grad-norm clipping folded into the update as a gradient scale.
#pragma once

#include <cstdint>

#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// sqrt(sum of squared gradients of trainable parameters), accumulated in double.
double grad_norm(ParamTable& params);

// min(1, max_norm / norm); 1 when max_norm is 0 (clipping off).
double clip_scale(double norm, double max_norm);

class AdamW {
 public:
  explicit AdamW(const OptimizerConfig& config) : config_(config) {}
  // One update of every trainable parameter with gradients scaled by grad_scale.
  void Step(ParamTable& params, double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }

 private:
  OptimizerConfig config_;
  int64_t steps_ = 0;
};

}  // namespace tessera::trainer
