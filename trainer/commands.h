// The `tessera` subcommands. Each takes the arguments after its name and returns the process
// exit status: 0 success, 1 runtime failure, 2 usage or recipe error.
#pragma once

#include <string>
#include <vector>

namespace tessera::trainer {

int run_train_command(const std::vector<std::string>& args);
int run_eval_command(const std::vector<std::string>& args);
int run_checkpoint_command(const std::vector<std::string>& args);  // verify | info

}  // namespace tessera::trainer
