#include "trainer/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tessera::trainer {
namespace {

TEST(LrSchedule, LinearWarmupThenCosineToFloor) {
  LrScheduleConfig s;
  s.warmup_steps = 10;
  s.decay = "cosine";
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(1.0, s, 1, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(1.0, s, 5, 110), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(1.0, s, 10, 110), 1.0);
  // halfway through decay: floor + (peak - floor) / 2
  EXPECT_NEAR(learning_rate(1.0, s, 60, 110), 0.55, 1e-12);
  EXPECT_NEAR(learning_rate(1.0, s, 110, 110), 0.1, 1e-12);
  // a quarter: floor + (peak-floor) * (1 + cos(pi/4)) / 2
  EXPECT_NEAR(learning_rate(2.0, s, 35, 110), 0.2 + 0.9 * (1 + std::cos(M_PI / 4)), 1e-12);
}

TEST(LrSchedule, ConstantAndNoWarmup) {
  LrScheduleConfig s;
  s.warmup_steps = 0;
  s.decay = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(3e-4, s, 1, 10), 3e-4);
  EXPECT_DOUBLE_EQ(learning_rate(3e-4, s, 10, 10), 3e-4);
  s.decay = "cosine";
  s.min_lr_ratio = 0.0;
  EXPECT_NEAR(learning_rate(1.0, s, 10, 10), 0.0, 1e-12);
}

}  // namespace
}  // namespace tessera::trainer
