// A failure on one rank (or on all) must end every rank quickly with one clear message.
// Driven by run_abort_mpitest.sh, which checks mpirun's exit status, time and output.
//
// Usage: mpirun -np K abort_mpitest one|all
//   one: the last rank throws while the others are blocked waiting on an all-reduce it will
//        never join; run_or_abort_all turns that into MPI_Abort of the job.
//   all: every rank detects the same bad layout (AllRanksError); only rank 0 prints it.
#include <cstdio>
#include <string>
#include <vector>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"

int main(int argc, char** argv) {
  using namespace tessera::parallel;
  MpiEnv env(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  return run_or_abort_all([&] {
    if (mode == "all") {
      throw AllRanksError("bad layout: parallel.pp=3 does not divide the world size " +
                          std::to_string(env.world_size()));
    }
    if (mode != "one") throw std::invalid_argument("usage: abort_mpitest one|all");
    auto world = MpiComm::world();  // default 300 s watchdog: only the abort can end the peers
    std::vector<float> x(1024, 1.0f);
    for (int step = 0; step < 5; ++step) {
      if (step == 3 && world->rank() == world->size() - 1) {
        throw std::runtime_error("injected failure on rank " + std::to_string(world->rank()) +
                                 " at step 3");
      }
      world->all_reduce(std::span<float>(x)).wait();
    }
    std::printf("rank %d finished without the failure\n", world->rank());
    return 0;
  });
}
