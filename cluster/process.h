// Runs a program from argv (no shell in between, so arguments need no quoting) and waits for it.
#pragma once

#include <string>
#include <vector>

namespace tessera::cluster {

struct ProcessResult {
  int status = -1;     // exit status; 128 + N when killed by signal N
  std::string output;  // stdout, when captured
};

// Searches PATH for argv[0]. With capture_stdout the child's stdout is returned, else inherited;
// stderr is always inherited. Throws std::runtime_error when the program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, bool capture_stdout);

}  // namespace tessera::cluster
