#include "cluster/slurm_config.h"

#include <gtest/gtest.h>

#include "cluster/shell_quote.h"

namespace tessera::cluster {
namespace {

TEST(SlurmConfig, TimeLimitsInEverySlurmForm) {
  EXPECT_EQ(time_limit_seconds("30"), 30 * 60);
  EXPECT_EQ(time_limit_seconds("10:05"), 10 * 60 + 5);
  EXPECT_EQ(time_limit_seconds("1:00:00"), 3600);
  EXPECT_EQ(time_limit_seconds("2-3"), 2 * 86400 + 3 * 3600);
  EXPECT_EQ(time_limit_seconds("2-3:04"), 2 * 86400 + 3 * 3600 + 4 * 60);
  EXPECT_EQ(time_limit_seconds("2-03:04:05"), 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
  for (const char* bad : {"", "1h", "-1", "1:2:3:4", "$(id)", "10\n", "1-"}) {
    EXPECT_EQ(time_limit_seconds(bad), -1) << bad;
  }
}

TEST(SlurmConfig, ListsSplitOnSemicolonsAndTrim) {
  EXPECT_EQ(split_list(" a ; b=c d;;\t"), (std::vector<std::string>{"a", "b=c d"}));
  EXPECT_TRUE(split_list("").empty());
}

TEST(SlurmConfig, ShellQuoteIsOneLiteralWord) {
  EXPECT_EQ(shell_quote("plain"), "'plain'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("$(id)`x`\n"), "'$(id)`x`\n'");
  EXPECT_THROW(shell_quote(std::string("a\0b", 3)), std::invalid_argument);
}

trainer::Recipe with_slurm(const std::string& key, const std::string& value) {
  return trainer::parse_recipe("data:\n  path: d\n", "r.yaml", {key + "=" + value});
}

TEST(SlurmConfig, ValidationNamesTheKey) {
  auto message = [](const trainer::Recipe& r, long long world = 1) {
    try {
      validate_slurm_config(r, world, true);
    } catch (const trainer::RecipeError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(with_slurm("slurm.partition", "gpu,debug")), "no error");
  EXPECT_NE(message(with_slurm("slurm.partition", "a;b")).find("r.yaml: slurm.partition:"),
            std::string::npos);
  EXPECT_NE(message(with_slurm("slurm.time", "soon")).find("slurm.time:"), std::string::npos);
  EXPECT_NE(message(with_slurm("slurm.extra", "--array=1-3")).find("--array is written by tessera"),
            std::string::npos);
  EXPECT_NE(message(with_slurm("slurm.extra", "--time=5")).find("set slurm.time instead"),
            std::string::npos);
  EXPECT_NE(message(with_slurm("slurm.env", "A=1;A=2")).find("A is set twice"), std::string::npos);
  EXPECT_NE(message(with_slurm("slurm.nodes", "2"), 1).find("slurm.ntasks_per_node:"),
            std::string::npos);
  EXPECT_EQ(message(with_slurm("slurm.ntasks_per_node", "4"), 4), "no error");
}

// run.device: cuda asks for a GPU per process; the job script requests them.
TEST(SlurmConfig, CudaRunsRequestOneGpuPerProcess) {
  auto recipe = [](const std::string& gpus) {
    return trainer::parse_recipe("data:\n  path: d\n", "r.yaml",
                                 {"run.device=cuda", "slurm.ntasks_per_node=8",
                                  "slurm.gpus_per_node=" + gpus});
  };
  try {
    validate_slurm_config(recipe("4"), 8, true);
    FAIL() << "expected RecipeError";
  } catch (const trainer::RecipeError& e) {
    EXPECT_NE(std::string(e.what()).find("r.yaml: slurm.gpus_per_node: 4 GPU(s) per node for 8"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(validate_slurm_config(recipe("8"), 8, true));
}

}  // namespace
}  // namespace tessera::cluster
