// The compute backend of a training or evaluation process: run.device of the recipe, on the GPU
// its local rank picks (one process per GPU). Created collectively so that a device that is
// missing on ANY rank stops EVERY rank with the same one-line error (no rank waits in a
// collective for a peer that gave up).
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Collective over `world`. Returns this rank's backend for recipe.run.device ("cuda": device
// local_rank modulo the visible GPUs). Throws RecipeError on every rank, naming run.device, the
// first rank that failed and why, when any rank cannot create it (no CUDA in this build, no
// visible GPU, ...), and (require_device_support) when training on it is not supported yet.
std::unique_ptr<kernels::Backend> make_device_backend(const Recipe& recipe, parallel::Comm& world);

// What runs on a device whose memory the host cannot address (a GPU): training (model, optimizer
// and kernels on the device, checkpoints staged through host mirrors); with several processes
// the build needs the NCCL communicator. `what` names the refused use (supported_there false);
// throws RecipeError naming run.device instead of crashing later.
void require_device_support(const Recipe& recipe, const kernels::Backend& backend,
                            const std::string& what, bool supported_there);

}  // namespace tessera::trainer
