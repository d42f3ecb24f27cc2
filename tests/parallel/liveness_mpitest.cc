// Liveness checks (parallel/liveness.h) under mpirun, one mode per run (2 ranks):
//   stopped_peer_work      rank 1 stops itself (SIGSTOP); rank 0 waits in an all-reduce. The
//                          Work must fail within seconds naming world rank 1 as silent, and
//                          run_or_abort_all ends the job (run_abort_mpitest.sh checks).
//   stopped_peer_blocking  as above, but rank 0 is blocked in MPI_Barrier (no Work) inside a
//                          BlockingWatch region: the watch thread must abort the job.
//   slow_peer              rank 1 is alive but late (it waits for a message rank 0 sends when it
//                          logs "still waiting"): rank 0's all-reduce must NOT fail, and its
//                          log line must say what rank 1 is doing. Exits 0 when all held.
//   backoff                rank 1 sleeps 2 s outside MPI while rank 0 waits: rank 0's process
//                          must use well under a core meanwhile (the progress thread backs off).
#include <signal.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/blocking_watch.h"
#include "parallel/liveness.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"

namespace {

using namespace tessera::parallel;
using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int slow_peer(MpiComm& world) {
  std::unique_ptr<Comm> side = world.split({0, 1}, "side");
  std::vector<float> x(4, 1.0f);
  int failures = 0;
  if (world.rank() == 0) {
    std::mutex mu;
    std::vector<std::string> lines;
    std::vector<int> token{1};
    Work release;
    world.liveness().set_sink([&](const std::string& line) {
      std::lock_guard<std::mutex> lock(mu);
      lines.push_back(line);
      if (!release.defined()) release = side->send<int>(token, 1, 0);
    });
    world.all_reduce(std::span<float>(x)).wait();  // throws if rank 1 were judged dead
    release.wait();
    world.liveness().set_sink(nullptr);
    const std::string first = lines.empty() ? "" : lines.front();
    std::printf("rank 0 logged: %s\n", first.c_str());
    for (const char* want : {"still waiting after", "all_reduce #", "world rank 1 (host",
                             "is waiting", "recv #0", "on comm 'side'"}) {
      if (first.find(want) == std::string::npos) {
        std::printf("FAIL: the log line lacks \"%s\"\n", want);
        ++failures;
      }
    }
  } else {
    std::vector<int> token(1);
    side->recv(std::span<int>(token), 0, 0).wait();
    world.all_reduce(std::span<float>(x)).wait();
  }
  if (x[0] != 2.0f) {
    std::printf("FAIL: all-reduce gave %g\n", x[0]);
    ++failures;
  }
  return failures;
}

int backoff(MpiComm& world) {
  std::vector<float> x(4, 1.0f);
  world.barrier().wait();
  if (world.rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    world.all_reduce(std::span<float>(x)).wait();
    return 0;
  }
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  world.all_reduce(std::span<float>(x)).wait();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  std::printf("rank 0 waited %.2f s using %.3f s of CPU\n", wall, cpu);
  // Spinning costs about a core (the old progress loop: ~1.0); backing off, a few percent.
  if (cpu > 0.25 * wall) {
    std::printf("FAIL: a waiting rank used %.0f%% of a core\n", 100 * cpu / wall);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  return run_or_abort_all([&] {
    MpiCommOptions options;
    options.stall_s = 1.0;
    options.timeout_s = 120;
    auto world = MpiComm::world(options);
    if (world->size() != 2) throw std::invalid_argument("liveness_mpitest needs 2 ranks");
    if (mode == "slow_peer") return slow_peer(*world) == 0 ? 0 : 1;
    if (mode == "backoff") return backoff(*world);
    if (mode != "stopped_peer_work" && mode != "stopped_peer_blocking") {
      throw std::invalid_argument(
          "usage: liveness_mpitest stopped_peer_work|stopped_peer_blocking|slow_peer|backoff");
    }
    world->barrier().wait();
    if (world->rank() == 1) {
      raise(SIGSTOP);  // every thread stops, the census responder too
      // mpirun's abort continues (SIGCONT) and then terminates stopped ranks.
      std::this_thread::sleep_for(std::chrono::seconds(60));
      return 0;
    }
    if (mode == "stopped_peer_work") {
      std::vector<float> x(4, 1.0f);
      world->all_reduce(std::span<float>(x)).wait();
    } else {
      const BlockingWatch::Region region =
          BlockingWatch::watch(world->blocking_watch(), "test barrier (blocking MPI_Barrier)", 120);
      MPI_Barrier(MPI_COMM_WORLD);
    }
    std::printf("rank 0 finished without the failure\n");
    return 0;
  });
}
