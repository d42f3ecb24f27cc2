// The compute backend of a training or evaluation process: run.device of the recipe, on the GPU
// its local rank picks (one process per GPU). Created collectively so that a device that is
// missing on ANY rank stops EVERY rank with the same one-line error (no rank waits in a
// collective for a peer that gave up).
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Collective over `world`. Returns this rank's backend for recipe.run.device ("cuda": device
// local_rank modulo the visible GPUs). Throws RecipeError on every rank, naming run.device, the
// first rank that failed and why, when any rank cannot create it (no CUDA in this build, no
// visible GPU, ...), and (require_host_memory) when the device cannot train yet.
std::unique_ptr<kernels::Backend> make_device_backend(const Recipe& recipe, parallel::Comm& world);

// The model runs on any backend, but gradient reduction (MPI), checkpoints (HDF5) and the
// pipeline still take host pointers: until the NCCL communicator and device staging are wired
// in, a device whose memory the host cannot address is refused here (RecipeError naming
// run.device) instead of crashing later.
void require_host_memory(const Recipe& recipe, const kernels::Backend& backend);

}  // namespace tessera::trainer
