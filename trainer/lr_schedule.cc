#include "trainer/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace tessera::trainer {

double learning_rate(double peak, const LrScheduleConfig& schedule, int64_t step,
                     int64_t total_steps) {
  const int64_t warmup = schedule.warmup_steps;
  if (step <= warmup) return peak * static_cast<double>(step) / static_cast<double>(warmup);
  if (schedule.decay == "constant") return peak;
  const double floor = peak * schedule.min_lr_ratio;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / decay_steps);
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace tessera::trainer
