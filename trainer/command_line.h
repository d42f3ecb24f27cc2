// Shared parsing for the recipe-driven subcommands (train, eval): options plus one positional
// RECIPE and repeatable --set overrides.
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::trainer {

// Parses args against `visible` (which must declare --help and --set) plus a positional RECIPE.
// Returns an exit status when the command should stop now: 0 after printing --help, 2 after
// printing a usage error; std::nullopt when vm is ready to use.
std::optional<int> parse_recipe_command(const std::string& command,
                                        const std::vector<std::string>& args,
                                        const boost::program_options::options_description& visible,
                                        boost::program_options::variables_map& vm);

// Loads vm["recipe"] with vm["set"] overrides; on a RecipeError prints it (when `print`; ranks
// other than 0 of a multi-process job pass false, as they all see the same error) prefixed with
// "tessera <command>: " and returns std::nullopt (exit status 2).
std::optional<Recipe> load_recipe_from(const std::string& command,
                                       const boost::program_options::variables_map& vm,
                                       bool print = true);

}  // namespace tessera::trainer
