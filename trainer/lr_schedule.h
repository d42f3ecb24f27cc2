// Learning rate at optimizer step `step` (1-based): linear warm-up from 0 to the peak over
// warmup_steps, then cosine decay to min_lr_ratio * peak at total_steps (or constant).
#pragma once

#include <cstdint>

#include "trainer/recipe.h"

namespace tessera::trainer {

double learning_rate(double peak, const LrScheduleConfig& schedule, int64_t step,
                     int64_t total_steps);

}  // namespace tessera::trainer
