// MPI process environment: init/finalize, error strings, and ending the whole job on failure.
//
// Guidance for the trainer (and every MPI program of ours): run main's body through
// run_or_abort_all(). An exception on ANY rank then ends EVERY rank within seconds, with the
// message printed once, instead of leaving the peers blocked forever in a collective the failed
// rank will never join. Errors that every rank detects identically (a bad recipe or layout,
// validated on every rank before any allocation) should be thrown as AllRanksError, so that only
// world rank 0 prints the message rather than N copies of it.
#pragma once

#include <mpi.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace tessera::parallel {

// Initializes MPI with MPI_THREAD_MULTIPLE (the communicators' progress thread and the compute
// thread both call MPI) and finalizes it on destruction.
// REQUIRES: every MpiComm is destroyed before the MpiEnv.
// Thread-safety: construct and destroy on the main thread only.
class MpiEnv {
 public:
  // Throws std::runtime_error if the MPI library provides less than MPI_THREAD_MULTIPLE.
  // If MPI is already initialized, only checks the thread level, and leaves MPI_Finalize to
  // whoever initialized it.
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

 private:
  bool owns_ = false;
  int world_rank_ = 0;
  int world_size_ = 1;
};

// MPI_Error_string of an MPI error code.
// MPI is initialized and not yet finalized (safe to call MPI).
bool mpi_usable();

std::string mpi_error_string(int code);
// Throws std::runtime_error("<what>: <MPI error string>") unless code == MPI_SUCCESS.
void check_mpi(int code, const std::string& what);

enum class AbortScope {
  kThisRank,  // this rank failed on its own: it prints the message
  kAllRanks,  // every rank detected the same error: world rank 0 prints it, the others stay quiet
};

// Prints "[tessera rank R] <message>" to stderr once per process and ends every rank of the job
// through MPI_Abort(MPI_COMM_WORLD, code). With kAllRanks, ranks other than 0 first give rank 0
// two seconds to abort the job, then print and abort themselves (so the message is never lost
// if rank 0 did not fail after all). Without MPI initialized, prints and _Exit(code)s.
// Safe to call from any thread, also concurrently.
[[noreturn]] void abort_all(const std::string& message, int code = 1,
                            AbortScope scope = AbortScope::kThisRank);

// An error every rank detects identically (bad recipe, bad layout).
class AllRanksError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Returns body()'s result; any exception ends the whole job through abort_all (scope kAllRanks
// for AllRanksError, kThisRank otherwise), with exit code 1.
int run_or_abort_all(const std::function<int()>& body);

}  // namespace tessera::parallel
