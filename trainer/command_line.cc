#include "trainer/command_line.h"

#include <iostream>

namespace tessera::trainer {

namespace po = boost::program_options;

std::optional<int> parse_recipe_command(const std::string& command,
                                        const std::vector<std::string>& args,
                                        const po::options_description& visible,
                                        po::variables_map& vm) {
  po::options_description all;
  all.add(visible).add_options()("recipe", po::value<std::string>())(
      "extra", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("recipe", 1).add("extra", -1);  // extras are collected to be named, not used
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera " << command << ": " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  if (vm.count("extra")) {
    std::cerr << "tessera " << command << ": unexpected argument '"
              << vm["extra"].as<std::vector<std::string>>().front()
              << "' after RECIPE (one recipe; override its keys with --set key=value)\n"
              << visible << "\n";
    return 2;
  }
  if (!vm.count("recipe")) {
    std::cerr << "tessera " << command << ": missing RECIPE\n" << visible << "\n";
    return 2;
  }
  return std::nullopt;
}

std::optional<Recipe> load_recipe_from(const std::string& command, const po::variables_map& vm,
                                       bool print) {
  try {
    return load_recipe(vm["recipe"].as<std::string>(),
                       vm.count("set") ? vm["set"].as<std::vector<std::string>>()
                                       : std::vector<std::string>{});
  } catch (const RecipeError& e) {
    if (print) std::cerr << "tessera " << command << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

}  // namespace tessera::trainer
