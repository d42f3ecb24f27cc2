#include "trainer/cpu_threads_check.h"

#include <span>
#include <string>
#include <thread>

#include "trainer/recipe.h"

namespace tessera::trainer {

void check_cpu_threads(int64_t threads, unsigned hardware_threads) {
  if (hardware_threads == 0) return;
  const int64_t limit = kCpuThreadsPerHardwareThread * static_cast<int64_t>(hardware_threads);
  if (threads <= limit) return;
  throw RecipeError("run.cpu_threads: " + std::to_string(threads) + " is more than " +
                    std::to_string(kCpuThreadsPerHardwareThread) + " x the " +
                    std::to_string(hardware_threads) +
                    " hardware thread(s) of this machine (at most " + std::to_string(limit) +
                    "; set run.cpu_threads to the cores each process may use)");
}

void check_cpu_threads(int64_t threads, parallel::Comm& world) {
  // 0 (unknown) must not win the minimum: count it as no limit.
  const unsigned mine = std::thread::hardware_concurrency();
  int64_t fewest = mine == 0 ? INT64_MAX : static_cast<int64_t>(mine);
  if (world.size() > 1) {
    world.all_reduce(std::span<int64_t>(&fewest, 1), {parallel::ReduceOp::kMin}).wait();
  }
  check_cpu_threads(threads, fewest == INT64_MAX ? 0u : static_cast<unsigned>(fewest));
}

}  // namespace tessera::trainer
