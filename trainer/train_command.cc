#include <boost/program_options.hpp>
#include <iostream>

#include "trainer/commands.h"
#include "trainer/recipe.h"
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
  po::options_description all;
  all.add(visible).add_options()("recipe", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("recipe", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera train: " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  if (!vm.count("recipe")) {
    std::cerr << "tessera train: missing RECIPE\n" << visible << "\n";
    return 2;
  }
  Recipe recipe;
  try {
    recipe = load_recipe(vm["recipe"].as<std::string>(),
                         vm.count("set") ? vm["set"].as<std::vector<std::string>>()
                                         : std::vector<std::string>{});
  } catch (const RecipeError& e) {
    std::cerr << "tessera train: " << e.what() << "\n";
    return 2;
  }
  try {
    train(recipe, std::cout);
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
