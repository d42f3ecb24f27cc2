// run.cpu_threads against the machine (trainer/cpu_threads_check.h): up to 4 threads per hardware
// thread pass, more is a RecipeError naming the key, the value and the machine's count; on several
// ranks the fewest hardware threads decide, identically everywhere.
#include "trainer/cpu_threads_check.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "parallel/fake_comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {
namespace {

TEST(CpuThreadsCheck, UpToFourPerHardwareThreadPass) {
  EXPECT_NO_THROW(check_cpu_threads(1, 2));
  EXPECT_NO_THROW(check_cpu_threads(8, 2));
  EXPECT_NO_THROW(check_cpu_threads(1024, 0));  // unknown hardware: the recipe's bound only
}

TEST(CpuThreadsCheck, MoreIsAnErrorNamingKeyValueAndCount) {
  try {
    check_cpu_threads(4096, 2);
    FAIL() << "expected RecipeError";
  } catch (const RecipeError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("run.cpu_threads: 4096 ", 0), 0u) << msg;
    EXPECT_NE(msg.find("the 2 hardware thread(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at most 8"), std::string::npos) << msg;
  }
  EXPECT_THROW(check_cpu_threads(9, 2), RecipeError);
}

TEST(CpuThreadsCheck, EveryRankAgrees) {
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw == 0) GTEST_SKIP() << "hardware_concurrency() is unknown here";
  const int64_t limit = kCpuThreadsPerHardwareThread * hw;
  std::vector<std::string> errors(3);
  parallel::run_fake_ranks(3, [&](parallel::Comm& comm) {
    try {
      check_cpu_threads(limit + 1, comm);
    } catch (const RecipeError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  EXPECT_NE(errors[0], "");
  EXPECT_EQ(errors[1], errors[0]);
  EXPECT_EQ(errors[2], errors[0]);
  parallel::run_fake_ranks(3, [&](parallel::Comm& comm) { check_cpu_threads(limit, comm); });
}

}  // namespace
}  // namespace tessera::trainer
