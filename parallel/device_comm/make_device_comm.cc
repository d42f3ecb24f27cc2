#include "parallel/device_comm/make_device_comm.h"

#include <stdexcept>
#include <string>

#include "parallel/mpi_comm.h"

#if TESSERA_HAVE_NCCL_COMM
#include <cuda_runtime_api.h>

#include "parallel/nccl/nccl_comm.h"
#endif

namespace tessera::parallel {

bool nccl_comm_built() {
#if TESSERA_HAVE_NCCL_COMM
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Comm> make_device_comm(Comm& group, kernels::Backend& backend) {
  const kernels::BackendCapabilities& caps = backend.capabilities();
  if (caps.host_accessible) return nullptr;
  auto* mpi = dynamic_cast<MpiComm*>(&group);
  if (!mpi) {
    throw std::runtime_error("communicator '" + group.name() + "' for " + caps.name +
                             ": NCCL is bootstrapped over MPI, and this group is not an MPI one");
  }
#if TESSERA_HAVE_NCCL_COMM
  NcclCommOptions options;
  options.compute_stream = static_cast<cudaStream_t>(backend.native_stream());
  return NcclComm::create(*mpi, caps.device_index, group.name() + "-nccl", options);
#else
  throw std::runtime_error("communicator '" + group.name() + "' for " + caps.name +
                           ": this build has no NCCL communicator (NCCL was not found when it "
                           "was configured)");
#endif
}

}  // namespace tessera::parallel
