// SIGUSR1 / SIGTERM as a request to stop: while a StopSignal lives, either signal only records
// itself (the handler sets an atomic), and the training loop decides at a step boundary, together
// with every other rank, to save a checkpoint and exit cleanly. Slurm sends SIGUSR1 before a time
// limit (--signal) and SIGTERM on preemption or requeue. The previous handlers come back on
// destruction. One StopSignal at a time per process.
#pragma once

#include <csignal>

namespace tessera::trainer {

class StopSignal {
 public:
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // The first stop signal received (SIGUSR1 or SIGTERM), 0 if none.
  int received() const;
  static const char* name(int signal);  // "SIGUSR1", "SIGTERM"

 private:
  struct sigaction old_usr1_, old_term_;
};

}  // namespace tessera::trainer
