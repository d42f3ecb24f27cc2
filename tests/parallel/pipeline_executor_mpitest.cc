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

#include "kernels/cpu_backend.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"
#include "tests/parallel/mpi_test_harness.h"
#include "tests/parallel/pipeline_toy.h"

namespace tessera::parallel {
namespace {



constexpr int64_t kElements = 20000;  // 80 KB per message: above Open MPI's eager limits
constexpr int kSteps = 3;

std::string run_toy(Comm& comm, const Schedule& s) {
  const testing::ToyReference ref =
      testing::toy_serial_reference(s.placement, s.micro_batches, kElements);
  kernels::CpuBackend cpu;
  PipelineExecutor exec(comm, s, kElements, cpu);
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
  MpiTestHarness h(world->rank());
  const int pp = world->size();
  for (const char* name : {"gpipe", "1f1b", "zb1p"}) {
    for (int m : {1, pp, 2 * pp + 1}) {
      const Schedule s = make_schedule(name, pp, m);
      h.run(std::string(name) + " pp=" + std::to_string(pp) + " m=" + std::to_string(m),
            [&] { return run_toy(*world, s); });
    }
  }
  for (int m : {2 * pp, 2 * pp + 2}) {
    const Schedule v = make_schedule("dualpipev", pp, m);
    h.run("dualpipev pp=" + std::to_string(pp) + " m=" + std::to_string(m),
          [&] { return run_toy(*world, v); });
    if (pp % 2 == 0) {
      const Schedule d = make_schedule("dualpipe", pp, m);
      h.run("dualpipe pp=" + std::to_string(pp) + " m=" + std::to_string(m),
            [&] { return run_toy(*world, d); });
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
