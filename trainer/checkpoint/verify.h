// `tessera checkpoint verify`: a whole checkpoint checked in one process.
#pragma once

#include <string>
#include <vector>

#include "trainer/checkpoint/env.h"

namespace tessera::trainer {

// Reads every dataset of a checkpoint and checks it against trainer.yaml (presence, shape,
// checksum), and trainer.yaml against its content checksum. Returns one line per problem, naming
// the dataset; empty when the checkpoint is sound.
std::vector<std::string> verify_checkpoint(const std::string& step_dir,
                                           CheckpointEnv& env = CheckpointEnv::Posix());

}  // namespace tessera::trainer
