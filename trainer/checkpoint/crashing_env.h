// A CheckpointEnv decorator for crash tests: the process kills itself (SIGKILL, as a crash of
// the machine would leave it: no clean-up, no MPI_Finalize) when it reaches a named point of a
// save. Only `tessera train` installs it, when TESSERA_CHECKPOINT_CRASH=<point>[@<step>] is set
// (tests/trainer/resume_test.py, tests/reliability/fault_table_test.sh).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "trainer/checkpoint/env.h"

namespace tessera::trainer {

class CrashingEnv : public CheckpointEnvWrapper {
 public:
  // `spec` is "<point>[@<step>]", point one of created|written|closed|renamed (env.h's
  // SavePoint); without a step, the first save to reach the point crashes. Throws
  // std::invalid_argument naming the spec otherwise. REQUIRES: base outlives it.
  CrashingEnv(CheckpointEnv& base, const std::string& spec);

  void Reached(SavePoint point, int64_t step) override;

 private:
  std::string spec_;
  SavePoint point_;
  std::optional<int64_t> step_;
};

}  // namespace tessera::trainer
