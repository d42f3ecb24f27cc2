// SIGUSR1 / SIGTERM as a request to stop: the training loop decides at a step boundary, together
// with every other rank, to save a checkpoint and exit cleanly. Slurm sends SIGUSR1 before a time
// limit (--signal) and SIGTERM on preemption or requeue.
//
// No signal interrupts tessera's computing threads. block_stop_signals() (`tessera train` calls
// it first thing in main, before MPI starts threads, so every thread tessera starts inherits the
// mask) keeps both signals away from them and starts one thread that takes them for the
// process's whole life (sigwaitinfo): while a StopSignal lives they are stop requests (the first
// is recorded); otherwise they get their default action, ending the process as if nothing had
// blocked them. A handler records them too while a StopSignal lives, on threads that libraries
// started before main and that never blocked them (an idle BLAS pool: the kernel delivers there
// first). Why: a handler runs on whichever thread the kernel picks, in the middle of a GEMM or an
// MPI call; under Slurm a SIGUSR1 delivered that way ended a rank with SIGSEGV (si_code
// SI_KERNEL, address 0: the kernel could not push the signal frame) instead of a checkpoint.
// One StopSignal at a time per process.
#pragma once

#include <csignal>

namespace tessera::trainer {

// Blocks SIGUSR1 and SIGTERM in the calling thread and every thread it starts afterwards.
void block_stop_signals();

class StopSignal {
 public:
  // Blocks the signals in the calling thread too (threads started earlier by others must have
  // been started after block_stop_signals(), or a signal may still reach them).
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
