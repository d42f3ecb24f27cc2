// The communicator that carries a backend's tensors among the ranks of a group. MPI moves host
// buffers; a backend whose memory the host cannot address (CUDA) needs NCCL over the same ranks,
// on the backend's device, ordered after its compute stream. Its own library
// (tessera_device_comm), since it links the NCCL communicator where this build has one.
//
// Thread-safety: collective over `group`; call from the thread that posts on it.
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "parallel/comm.h"

namespace tessera::parallel {

// True when this build has the NCCL communicator (CUDA and NCCL were found).
bool nccl_comm_built();

// Null when `group` itself carries the backend's tensors (host-accessible memory); else a new
// NCCL communicator over group's ranks (collective over group). Throws std::runtime_error naming
// what is missing when the backend's memory needs NCCL and this build has none, or `group` is
// not an MPI communicator (NCCL is bootstrapped over MPI).
std::unique_ptr<Comm> make_device_comm(Comm& group, kernels::Backend& backend);

}  // namespace tessera::parallel
