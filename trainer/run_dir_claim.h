// Claiming run.dir for one training run. World rank 0 takes an exclusive flock on
// run.dir/.tessera.lock (its text: "host pid") and holds it for the whole run, so a second run into
// the same directory is refused while the first lives; the kernel drops the lock when the process
// ends, however it ends (crash, SIGKILL), so a stale lock never blocks a restart. A fresh run (no
// --resume) into a directory that already holds a run's checkpoints or metrics is refused too,
// unless told to overwrite: then the old run's files go first. Rank 0 decides and broadcasts the
// outcome before any rank writes or blocks elsewhere, so every rank of a refused run stops.
#pragma once

#include <stdexcept>
#include <string>

#include "parallel/comm.h"

namespace tessera::trainer {

// What the run wants of run.dir.
enum class RunDirUse {
  kFresh,      // start from step 0; refused if the directory holds a previous run
  kResume,     // --resume: continue (or start fresh when there is nothing to continue)
  kOverwrite,  // --overwrite: delete the previous run's files, then start from step 0
};

// A refused claim, thrown with the same message on every rank. exit_status follows
// trainer/commands.h: 1 when another run holds the lock (the same command works later), 2 when
// the command line must change (--resume auto or --overwrite).
class RunDirRefused : public std::runtime_error {
 public:
  RunDirRefused(const std::string& what, int exit_status)
      : std::runtime_error(what), exit_status_(exit_status) {}
  int exit_status() const { return exit_status_; }

 private:
  int exit_status_;
};

// An exclusive flock on a run directory's lock file, released on destruction (or process exit).
// Move-only; an empty lock holds nothing.
class RunDirLock {
 public:
  RunDirLock() = default;
  // Creates run_dir and its lock file, and takes the lock without waiting. Throws RunDirRefused
  // (status 1) naming the holder's host and pid when another open file description holds it,
  // std::runtime_error naming the path when the file cannot be created.
  explicit RunDirLock(const std::string& run_dir);
  ~RunDirLock();
  RunDirLock(RunDirLock&& other) noexcept;
  RunDirLock& operator=(RunDirLock&& other) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  bool held() const { return fd_ >= 0; }
  // A note for the log when the file system refused flock (the run goes on unprotected); else "".
  const std::string& warning() const { return warning_; }

 private:
  int fd_ = -1;
  std::string warning_;
};

// run_dir/.tessera.lock
std::string run_dir_lock_path(const std::string& run_dir);

// What of a previous run lies in run_dir ("checkpoints/ (latest: step-00000008), metrics.jsonl
// (8 lines)"); empty when nothing: no checkpoints/ with a `latest` or a step-* directory, no
// non-empty metrics.jsonl.
std::string previous_run_in(const std::string& run_dir);

// Removes what a previous `tessera train` wrote in run_dir: checkpoints/, metrics.jsonl, DONE,
// logs/, trace/ and trace.json (not job/, the lock or anything else). Throws naming the path.
void remove_previous_run(const std::string& run_dir);

// Collective over world (every rank calls it, before anything else touches run_dir): rank 0
// takes the lock, checks `use` against what lies in run_dir (and with kOverwrite removes it),
// then broadcasts the outcome. Every rank throws the same RunDirRefused when refused. Returns the
// lock, held on rank 0 (empty on the others); keep it for the whole run.
RunDirLock claim_run_dir(const std::string& run_dir, RunDirUse use, parallel::Comm& world);

}  // namespace tessera::trainer
