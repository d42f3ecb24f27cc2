#include <boost/program_options.hpp>
#include <iostream>

#include "trainer/command_line.h"
#include "trainer/commands.h"
#include "trainer/trainer.h"

namespace tessera::trainer {

namespace po = boost::program_options;

int run_train_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera train RECIPE [--set key.path=value]...\n\n"
      "Trains the model of RECIPE (YAML). Writes under run.dir: metrics.jsonl (one JSON object per\n"
      "step), recipe.yaml (the resolved recipe) and checkpoints/step-NNNNNNNN/{model.h5,trainer.yaml}.\n"
      "The dataset at data.path is written by `tessera prepare`.\n\nOptions");
  visible.add_options()
      ("help,h", "show this help")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a recipe key, e.g. --set train.steps=10 (repeatable)");
  po::variables_map vm;
  if (auto status = parse_recipe_command("train", args, visible, vm)) return *status;
  const std::optional<Recipe> recipe = load_recipe_from("train", vm);
  if (!recipe) return 2;
  try {
    train(*recipe, std::cout);
  } catch (const RecipeError& e) {
    std::cerr << "tessera train: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tessera train: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace tessera::trainer
