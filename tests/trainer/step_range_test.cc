// parse_step_range: the text forms of logging.trace_steps.
#include "trainer/step_range.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace tessera::trainer {
namespace {

TEST(StepRangeTest, OneStepOrAnInclusiveRange) {
  EXPECT_EQ(parse_step_range(""), std::nullopt);
  EXPECT_EQ(parse_step_range("  "), std::nullopt);
  EXPECT_EQ(parse_step_range("7"), (StepRange{7, 7}));
  EXPECT_EQ(parse_step_range("5-6"), (StepRange{5, 6}));
  EXPECT_EQ(parse_step_range(" 5 - 6 "), (StepRange{5, 6}));
  const StepRange r{5, 6};
  EXPECT_FALSE(r.contains(4));
  EXPECT_TRUE(r.contains(5));
  EXPECT_TRUE(r.contains(6));
  EXPECT_FALSE(r.contains(7));
}

TEST(StepRangeTest, MalformedTextIsAnError) {
  for (const char* bad : {"x", "5-", "-5", "5-6-7", "5..6", "1.5", "0", "3-0", "6-5", "9999999999999999999"}) {
    EXPECT_THROW(parse_step_range(bad), std::invalid_argument) << bad;
  }
}

}  // namespace
}  // namespace tessera::trainer
