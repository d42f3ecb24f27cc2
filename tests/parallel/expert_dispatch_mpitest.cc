// Expert dispatch/combine under mpirun: the plan, row placement, dispatch then combine = identity
// and the adjoint identity (backward of dispatch = combine), for every EP size in {1, 2, 4} that
// divides the world (world = dp, pp = 1; e.g. np=4 runs ep=4 and ep=2 with two groups), plus a
// larger width so that MPI moves multi-kilobyte blocks.
//
// Usage: mpirun -np K expert_dispatch_mpitest
// Every rank runs every check; a check fails if it fails on any rank (each failing rank prints
// why). Rank 0 prints "N passed, M failed"; the exit status is non-zero on any failure.
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "tests/parallel/expert_dispatch_checks.h"
#include "tests/parallel/mpi_test_harness.h"

namespace tessera::parallel {
namespace {



int run(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  MpiCommOptions options;
  options.timeout_s = 60;  // a hang fails the test instead of stalling ctest
  auto world = MpiComm::world(options);
  MpiTestHarness h(world->rank());
  for (int ep : {1, 2, 4}) {
    if (world->size() % ep != 0) continue;
    std::unique_ptr<Comm> group = testing::split_ep(*world, ep);
    const std::string tag =
        "ep=" + std::to_string(ep) + " of world " + std::to_string(world->size());
    h.run("placement, identity, adjoint " + tag,
          [&] { return testing::check_dispatch_all(*group, 29); });
    h.run("wide rows " + tag, [&] {
      using testing::RoutePattern;
      const std::string a = testing::check_dispatch_placement(*group, 2 * ep, testing::kMaxWidth,
                                                              RoutePattern::kMixed, 31);
      const std::string b =
          testing::check_dispatch_adjoint(*group, 2 * ep, 1000, RoutePattern::kSilentRank, 37);
      return a.empty() || b.empty() ? a + b : a + "\n" + b;
    });
  }
  const int rc = h.finish();
  world.reset();  // before MPI_Finalize
  return rc;
}

}  // namespace
}  // namespace tessera::parallel

int main(int argc, char** argv) { return tessera::parallel::run(argc, argv); }
