// The `tessera` subcommands of cluster/: same exit-status convention as trainer/commands.h
// (0 success, 1 runtime failure, 2 usage or recipe error).
#pragma once

#include <string>
#include <vector>

namespace tessera::cluster {

// tessera submit RECIPE [--set k=v]... [--dry-run] [--tessera PATH]
int run_submit_command(const std::vector<std::string>& args);
// tessera sweep SWEEP.yaml [--local] [--dry-run] ... | tessera sweep report DIR ...
int run_sweep_command(const std::vector<std::string>& args);
// tessera trace plot RUN_DIR [--out FILE.png] [--width PX]
int run_trace_command(const std::vector<std::string>& args);
// tessera plan calibrate ... -> run_plan_calibrate_command; tessera plan ... (anything else) ->
// run_plan_predict_command. Under MPI (main.cc's MpiEnv), like train.
int run_plan_command(const std::vector<std::string>& args);
// mpirun -np N tessera plan calibrate RECIPE... --out FILE [--name NAME] [--precisions LIST]
// [--set k=v]... [--quick]: measures this machine into a cluster description (cluster_spec.h).
int run_plan_calibrate_command(const std::vector<std::string>& args);
// tessera plan RECIPE --cluster FILE ...: the planner's predictions (cluster/plan.h).
int run_plan_predict_command(const std::vector<std::string>& args);

}  // namespace tessera::cluster
