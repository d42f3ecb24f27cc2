#include "trainer/device_backend.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <string>

#include "kernels/factory/make_backend.h"
#include "parallel/device_comm/make_device_comm.h"
#include "parallel/rank_grid.h"

namespace tessera::trainer {

namespace {
// The first failing rank's reason, broadcast to all (as int32 words: Comm carries no chars).
constexpr size_t kMessageBytes = 512;
}  // namespace

std::unique_ptr<kernels::Backend> make_device_backend(const Recipe& recipe,
                                                      parallel::Comm& world) {
  std::unique_ptr<kernels::Backend> backend;
  std::string error;
  try {
    const int local_rank = parallel::local_rank_from_env(world.rank(), world.size());
    backend = kernels::make_backend(recipe.run.device, local_rank);
    // NCCL refuses two ranks of one communicator on one GPU: say so before it does.
    const int per_node = parallel::ranks_per_node_from_env(world.size());
    const int gpus = kernels::visible_cuda_devices();
    if (!backend->capabilities().host_accessible && world.size() > 1 && per_node > gpus) {
      error = "run.device: cuda: " + std::to_string(per_node) + " processes per node but " +
              std::to_string(gpus) +
              " visible GPU(s): one GPU per process (NCCL cannot put two ranks on one GPU)";
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  // Every rank learns whether any rank failed, and the first one's reason.
  int first_failed[1] = {error.empty() ? world.size() : world.rank()};
  world.all_reduce(std::span<int32_t>(first_failed), {parallel::ReduceOp::kMin}).wait();
  if (first_failed[0] == world.size()) {
    // The same device kind on every rank, so every rank decides alike.
    require_device_support(recipe, *backend,
                           "training on " + std::to_string(world.size()) +
                               " processes (this build has no NCCL communicator)",
                           world.size() == 1 || parallel::nccl_comm_built());
    return backend;
  }
  std::array<int32_t, kMessageBytes / 4> text{};
  if (world.rank() == first_failed[0]) {
    std::memcpy(text.data(), error.data(), std::min(error.size(), kMessageBytes - 1));
  }
  world.broadcast(std::span<int32_t>(text), first_failed[0]).wait();
  const std::string reason(reinterpret_cast<const char*>(text.data()));
  throw RecipeError(recipe.source + ": rank " + std::to_string(first_failed[0]) + " of " +
                    std::to_string(world.size()) + ": " + reason);
}

void require_device_support(const Recipe& recipe, const kernels::Backend& backend,
                            const std::string& what, bool supported_there) {
  if (backend.capabilities().host_accessible || supported_there) return;
  throw RecipeError(recipe.source + ": run.device: " + recipe.run.device + " (" +
                    backend.capabilities().name + "): " + what +
                    " is not supported on this device; use run.device: cpu");
}

}  // namespace tessera::trainer
