// PipelineExecutor under mpirun, one pipeline stage per rank: the toy model of pipeline_toy.h
// gives the serial losses and weight gradients on every stage, in the schedule's order of
// StageCompute calls, for three steps in a row, under gpipe, 1f1b, interleaved and zb1p.
// Boundary buffers are large enough (80 KB) that Open MPI's sends are not eager: a send
// completes only once the peer posted its receive, as the executor must allow.
//
// Usage: mpirun -np K pipeline_executor_mpitest
// Every rank runs every check; a check fails if it fails on any rank (each failing rank prints
// why). Rank 0 prints "N passed, M failed"; the exit status is non-zero on any failure.
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule_generators.h"
#include "tests/parallel/pipeline_toy.h"

namespace tessera::parallel {
namespace {

using Clock = std::chrono::steady_clock;

class Harness {
 public:
  explicit Harness(int rank) : rank_(rank) {}

  // Runs check on every rank; it returns "" on success. Agreement goes through plain blocking
  // MPI on MPI_COMM_WORLD so that a broken communicator cannot hide a failure.
  void run(const std::string& name, const std::function<std::string()>& check) {
    std::string failure;
    const auto t0 = Clock::now();
    try {
      failure = check();
    } catch (const std::exception& e) {
      failure = "threw: " + std::string(e.what());
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
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

constexpr int64_t kElements = 20000;  // 80 KB per message: above Open MPI's eager limits
constexpr int kSteps = 3;

std::string run_toy(Comm& comm, const Schedule& s) {
  const testing::ToyReference ref =
      testing::toy_serial_reference(s.virtual_stages(), s.micro_batches, kElements);
  PipelineExecutor exec(comm, s, kElements);
  testing::ToyStage toy(s, comm.rank(), kElements);
  std::string f;
  for (int step = 0; step < kSteps; ++step) {
    toy.begin_step();
    const PipelineStepStats stats = exec.run(toy);
    const std::string mismatch = testing::check_toy_stage(s, toy, ref);
    if (!mismatch.empty()) f += "step " + std::to_string(step) + ": " + mismatch;
    if (stats.instructions != static_cast<int64_t>(s.per_stage[comm.rank()].size())) {
      f += "stats.instructions = " + std::to_string(stats.instructions) + "\n";
    }
    if (stats.compute_s + stats.wait_s > stats.total_s) f += "compute + wait > total\n";
  }
  return f;
}

int run(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  MpiCommOptions options;
  options.timeout_s = 60;  // a hang fails the test instead of stalling ctest
  auto world = MpiComm::world(options);
  Harness h(world->rank());
  const int pp = world->size();
  for (const char* name : {"gpipe", "1f1b", "zb1p"}) {
    for (int m : {1, pp, 2 * pp + 1}) {
      const Schedule s = make_schedule(name, pp, m);
      h.run(std::string(name) + " pp=" + std::to_string(pp) + " m=" + std::to_string(m),
            [&] { return run_toy(*world, s); });
    }
  }
  for (int m : {pp, 2 * pp}) {
    for (int v : {2, 3}) {
      const Schedule s = interleaved_schedule(pp, m, v);
      h.run("interleaved pp=" + std::to_string(pp) + " m=" + std::to_string(m) +
                " v=" + std::to_string(v),
            [&] { return run_toy(*world, s); });
    }
  }
  const int rc = h.finish();
  world.reset();  // before MPI_Finalize
  return rc;
}

}  // namespace
}  // namespace tessera::parallel

int main(int argc, char** argv) { return tessera::parallel::run(argc, argv); }
