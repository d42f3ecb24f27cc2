// The memory check before training: the largest rank's plan against the memory there is, with a
// message naming the rank, both sizes, the largest term and the keys that size it.
#include "trainer/memory_check.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera::trainer {
namespace {

RankMemory plan(int rank, int64_t parameters, int64_t activations) {
  RankMemory m;
  m.rank = rank;
  m.stage = rank;
  m.parameters = m.gradients = parameters;
  m.optimizer = 2 * parameters;
  m.activations = activations;
  return m;
}

std::string refusal(const std::vector<RankMemory>& plans, int64_t available) {
  try {
    check_memory_fits(plans, available, "the test's memory");
  } catch (const RecipeError& e) {
    return e.what();
  }
  return "";
}

TEST(MemoryCheck, FitsOrNamesTheLargestRankAndTerm) {
  const int64_t gib = int64_t{1} << 30;
  const std::vector<RankMemory> plans = {plan(0, gib, gib), plan(4, gib, 10 * gib)};
  EXPECT_EQ(refusal(plans, 14 * gib), "");  // rank 4 needs exactly 14 GiB
  const std::string e = refusal(plans, 13 * gib);
  EXPECT_NE(e.find("rank 4 (stage 4) plans 14.00 GiB"), std::string::npos) << e;
  EXPECT_NE(e.find("the test's memory is 13.00 GiB"), std::string::npos) << e;
  EXPECT_NE(e.find("largest term is activations (10.00 GiB)"), std::string::npos) << e;
  EXPECT_NE(e.find("train.global_batch"), std::string::npos) << e;
  // Parameters dominating: their keys.
  const std::string p = refusal({plan(0, 8 * gib, gib)}, gib);
  EXPECT_NE(p.find("largest term is optimizer state"), std::string::npos) << p;
  EXPECT_NE(p.find("model.dim"), std::string::npos) << p;
  EXPECT_EQ(refusal(plans, -1), "");  // unknown: not checked
}

TEST(MemoryCheck, AvailableHostMemoryIsKnownHere) { EXPECT_GT(available_host_memory(), 0); }

}  // namespace
}  // namespace tessera::trainer
