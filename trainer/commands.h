// The `tessera` subcommands. Each takes the arguments after its name and returns the process
// exit status: 0 success, 1 runtime failure, 2 usage or recipe error.
#pragma once

#include <string>
#include <vector>

namespace tessera::trainer {

int run_train_command(const std::vector<std::string>& args);
int run_eval_command(const std::vector<std::string>& args);
int run_checkpoint_command(const std::vector<std::string>& args);  // verify | info | export | import
// `checkpoint export` / `checkpoint import` (Hugging Face checkpoints); args after the verb.
int run_checkpoint_export_command(const std::vector<std::string>& args);
int run_checkpoint_import_command(const std::vector<std::string>& args);

}  // namespace tessera::trainer
