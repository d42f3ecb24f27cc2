// Submitting a rendered job script with sbatch.
#pragma once

#include <string>

namespace tessera::cluster {

// Writes `script` to `script_path` (creating its directory) and runs `sbatch --parsable` on it.
// Returns the job id. Throws std::runtime_error naming the failure (sbatch's own message went to
// stderr).
std::string sbatch_submit(const std::string& script, const std::string& script_path);

// Absolute path of the running tessera binary (/proc/self/exe).
std::string this_executable();

}  // namespace tessera::cluster
