// The pass/fail bookkeeping of the MPI test programs (tests/parallel/*_mpitest.cc): every rank runs
// every check; a check fails if it fails on any rank (each failing rank prints why); rank 0 prints
// one line per check and the totals; finish() is the exit status.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>

namespace tessera::parallel {

class MpiTestHarness {
 public:
  explicit MpiTestHarness(int rank) : rank_(rank) {}

  // Runs check on every rank; it returns "" on success. Agreement goes through plain blocking
  // MPI on MPI_COMM_WORLD so that a broken communicator cannot hide a failure.
  void run(const std::string& name, const std::function<std::string()>& check) {
    std::string failure;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      failure = check();
    } catch (const std::exception& e) {
      failure = "threw: " + std::string(e.what());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!failure.empty()) {
      std::fprintf(stderr, "[rank %d] FAIL %s: %s\n", rank_, name.c_str(), failure.c_str());
    }
    int local = failure.empty() ? 0 : 1, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    (any ? failed_ : passed_) += 1;
    if (rank_ == 0) {
      std::printf("%s %s (%.2f s)\n", any ? "FAIL" : "ok  ", name.c_str(), seconds);
      std::fflush(stdout);
    }
  }

  int finish() const {
    if (rank_ == 0) std::printf("%d passed, %d failed\n", passed_, failed_);
    return failed_ ? 1 : 0;
  }

 private:
  int rank_;
  int passed_ = 0;
  int failed_ = 0;
};

}  // namespace tessera::parallel
