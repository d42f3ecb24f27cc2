// `tessera train RECIPE --cluster FILE`: the peak TFLOP/s of the cluster file's device at the
// recipe's precision.compute becomes `--set run.peak_tflops=...`, so the trainer's metrics report
// MFU from the same FLOP formulas and peak the planner uses. The trainer reads no cluster files
// (cluster/ sits above trainer/); the entry point resolves the option before `train` runs.
#pragma once

#include <string>
#include <vector>

namespace tessera::cluster {

// `args` (train's, after the command name) without --cluster FILE, plus the --set it stands for.
// Unchanged when there is no --cluster. Throws ClusterSpecError (the file) or trainer::RecipeError
// (the recipe or a --set, as train would report it); std::invalid_argument when FILE is missing.
std::vector<std::string> resolve_train_cluster(const std::vector<std::string>& args);

}  // namespace tessera::cluster
