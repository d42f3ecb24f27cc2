// make_backend: the backend a device name asks for. Lives in its own library
// (tessera_backends) because it links every backend this build has: the CPU one always, the
// CUDA one where nvcc was found.
//
// Thread-safety: make_backend may be called from any thread.
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"

namespace tessera::kernels {

// True when this build contains the CUDA backend (nvcc was found when it was configured).
bool cuda_backend_built();
// CUDA devices this process sees; 0 without the CUDA backend, a driver or a device.
int visible_cuda_devices();

// "cpu" -> CpuBackend; "cuda" -> CudaBackend on CUDA device local_rank modulo the devices this
// process sees (one process per GPU; when the launcher gives each process only its own GPU, that
// is device 0). Throws std::runtime_error with one line saying what is missing when "cuda" cannot
// run here (no CUDA backend in this build, no visible device), and std::invalid_argument for an
// unknown name or a negative local_rank.
std::unique_ptr<Backend> make_backend(const std::string& device, int local_rank = 0);

}  // namespace tessera::kernels
