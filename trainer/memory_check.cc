#include "trainer/memory_check.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <span>
#include <sstream>
#include <string>

namespace tessera::trainer {
namespace {

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  return buf;
}

}  // namespace

void check_memory_fits(const std::vector<RankMemory>& plans, int64_t available_bytes,
                       const std::string& available_what) {
  if (plans.empty() || available_bytes < 0) return;
  const RankMemory& worst = *std::max_element(
      plans.begin(), plans.end(),
      [](const RankMemory& a, const RankMemory& b) { return a.total() < b.total(); });
  if (worst.total() <= available_bytes) return;
  const MemoryTerm largest = largest_memory_term(worst);
  throw RecipeError("memory: rank " + std::to_string(worst.rank) + " (stage " +
                    std::to_string(worst.stage) + ") plans " + gib(worst.total()) + ", but " +
                    available_what + " is " + gib(available_bytes) + "; its largest term is " +
                    largest.name + " (" + gib(largest.bytes) + "), sized by " + largest.keys +
                    " (`tessera train RECIPE --dry-run` shows every rank's plan)");
}

int64_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      int64_t kib = 0;
      if (fields >> kib) return kib * 1024;
    }
  }
  return -1;
}

void check_memory_fits(const Recipe& recipe, int ranks_per_node, parallel::Comm& world) {
  if (recipe.run.device != "cpu") return;  // device memory: not checked yet (memory_check.h)
  const int64_t machine = available_host_memory();
  int64_t share = machine < 0 ? std::numeric_limits<int64_t>::max()
                              : machine / std::max(1, ranks_per_node);
  if (world.size() > 1) {
    world.all_reduce(std::span<int64_t>(&share, 1), {parallel::ReduceOp::kMin}).wait();
  }
  if (share == std::numeric_limits<int64_t>::max()) return;  // no rank could tell
  check_memory_fits(plan_memory_per_stage(recipe, kernels::Device::kCPU), share,
                    "a rank's share of its machine's available memory (MemAvailable / " +
                        std::to_string(ranks_per_node) + " ranks on the node)");
}

}  // namespace tessera::trainer
