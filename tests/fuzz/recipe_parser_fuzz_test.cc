// Fuzzes the recipe parser (parse_recipe): seeded mutations of two valid recipes (recipes/tiny-moe
// .yaml as written, and the full dump of every key) must each load or throw an exception naming the
// recipe; a recipe that loads must survive its own dump (recipe_to_yaml -> parse_recipe).
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "tests/fuzz/fuzz_case.h"
#include "tests/fuzz/mutator.h"
#include "trainer/recipe.h"

namespace tessera::fuzz {
namespace {

const int kMutations = mutation_count(400);
constexpr const char* kSource = "fuzzed-recipe.yaml";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void parse_and_round_trip(const std::string& text) {
  const trainer::Recipe recipe = trainer::parse_recipe(text, kSource);
  const trainer::Recipe again = trainer::parse_recipe(trainer::recipe_to_yaml(recipe), kSource);
  if (!(again == recipe)) throw std::logic_error("round trip: the dump of a loaded recipe differs");
}

TEST(RecipeParserFuzz, EveryMutationLoadsOrThrowsNamingTheRecipe) {
  const std::string written = read_text(std::string(TESSERA_SOURCE_DIR) + "/recipes/tiny-moe.yaml");
  ASSERT_FALSE(written.empty());
  const std::string dumped = trainer::recipe_to_yaml(trainer::parse_recipe(written, kSource));
  for (const std::string* base : {&written, &dumped}) {
    const CaseResult unmutated = run_case([&] { parse_and_round_trip(*base); });
    ASSERT_EQ(unmutated.kind, CaseResult::Kind::kLoaded) << unmutated.detail;
  }

  int loaded = 0, threw = 0;
  for (int seed = 0; seed < kMutations; ++seed) {
    Mutator mutator(static_cast<uint64_t>(seed));
    std::string what;
    const std::string text = mutator.mutate_text(seed % 2 ? dumped : written, &what);
    const CaseResult r = run_case([&] { parse_and_round_trip(text); });
    if (r.kind == CaseResult::Kind::kLoaded) {
      ++loaded;
    } else if (r.kind == CaseResult::Kind::kThrew && r.detail.find(kSource) != std::string::npos) {
      ++threw;
    } else {
      ADD_FAILURE() << "seed " << seed << " (" << what << "): "
                    << (r.kind == CaseResult::Kind::kThrew ? "message does not name the recipe: " : "")
                    << r.detail << "\n--- input ---\n" << text;
    }
  }
  // Both outcomes occur, or the mutations test nothing.
  EXPECT_GT(loaded, 0);
  EXPECT_GT(threw, kMutations / 4);
  std::cout << "recipe parser: " << loaded << " loaded, " << threw << " refused of " << kMutations
            << " mutations\n";
}

}  // namespace
}  // namespace tessera::fuzz
