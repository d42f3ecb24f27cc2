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

}  // namespace tessera::cluster
