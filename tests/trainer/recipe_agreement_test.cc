// check_same_recipe over fake ranks (threads): equal recipes pass, a differing key is one
// RecipeError on every rank naming it, both values and both world ranks; per-node keys may differ.
#include "trainer/recipe_agreement.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::trainer {
namespace {

const std::string kYaml = "data:\n  path: /data/x\nmodel:\n  dim: 32\n  inter_dim: 48\n";

// Runs check_same_recipe on 3 ranks, rank r's recipe given `overrides[r]`; returns each rank's
// error message ("" when it passed).
std::vector<std::string> Check(const std::vector<std::vector<std::string>>& overrides) {
  std::vector<std::string> errors(overrides.size());
  parallel::run_fake_ranks(static_cast<int>(overrides.size()), [&](parallel::Comm& comm) {
    const Recipe r = parse_recipe(kYaml, "mem", overrides[static_cast<size_t>(comm.rank())]);
    try {
      check_same_recipe(r, comm);
    } catch (const RecipeError& e) {
      errors[static_cast<size_t>(comm.rank())] = e.what();
    }
  });
  return errors;
}

TEST(RecipeAgreement, EqualRecipesPass) {
  for (const std::string& e : Check({{}, {}, {}})) EXPECT_EQ(e, "");
}

TEST(RecipeAgreement, FirstDifferingKeyIsNamedOnEveryRank) {
  const std::vector<std::string> errors =
      Check({{}, {}, {"model.inter_dim=64", "optimizer.lr=0.5"}});
  for (const std::string& e : errors) {
    EXPECT_NE(e.find("model.inter_dim is 64 on world rank 2 but 48 on world rank 0"),
              std::string::npos)
        << e;
  }
  EXPECT_EQ(errors[0], errors[1]);
  EXPECT_EQ(errors[0], errors[2]);
}

TEST(RecipeAgreement, PerNodeKeysMayDiffer) {
  for (const std::string& e :
       Check({{"data.path=/local/a"}, {"data.path=/local/b", "run.cpu_threads=2"}, {}})) {
    EXPECT_EQ(e, "");
  }
}

}  // namespace
}  // namespace tessera::trainer
