#include "parallel/mpi_env.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace tessera::parallel {

bool mpi_usable() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

namespace {

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "unknown thread level";
}

}  // namespace

MpiEnv::MpiEnv(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    owns_ = true;
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    if (owns_) MPI_Finalize();
    throw std::runtime_error(std::string("MPI provides only ") + thread_level_name(provided) +
                             "; tessera needs MPI_THREAD_MULTIPLE (its communicators run a "
                             "progress thread beside the compute thread)");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
}

MpiEnv::~MpiEnv() {
  if (owns_ && mpi_usable()) MPI_Finalize();
}

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) {
    return "MPI error code " + std::to_string(code);
  }
  return std::string(text, len) + " (MPI error " + std::to_string(code) + ")";
}

void check_mpi(int code, const std::string& what) {
  if (code != MPI_SUCCESS) throw std::runtime_error(what + ": " + mpi_error_string(code));
}

void abort_all(const std::string& message, int code, AbortScope scope) {
  static std::atomic<bool> printed{false};
  const bool mpi = mpi_usable();
  int rank = 0;
  if (mpi) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (mpi && scope == AbortScope::kAllRanks && rank != 0) {
    // Rank 0 reports the shared error and its MPI_Abort ends this process; if it does not
    // come, this rank's own report follows.
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  if (!printed.exchange(true)) {
    std::fprintf(stderr, "[tessera rank %d] %s\n", rank, message.c_str());
    std::fflush(stderr);
  }
  if (mpi) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int run_or_abort_all(const std::function<int()>& body) {
  try {
    return body();
  } catch (const AllRanksError& e) {
    abort_all(std::string("error: ") + e.what(), 1, AbortScope::kAllRanks);
  } catch (const std::exception& e) {
    abort_all(std::string("error: ") + e.what(), 1, AbortScope::kThisRank);
  } catch (...) {
    abort_all("error: unknown exception", 1, AbortScope::kThisRank);
  }
}

}  // namespace tessera::parallel
