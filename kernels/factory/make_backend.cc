#include "kernels/factory/make_backend.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/cpu_backend.h"

#if TESSERA_HAVE_CUDA_BACKEND
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#endif

namespace tessera::kernels {

namespace {

#if TESSERA_HAVE_CUDA_BACKEND
// "CUDA_VISIBLE_DEVICES=<value>" or "CUDA_VISIBLE_DEVICES unset": the usual reason a GPU the
// user expects is not visible.
std::string visible_devices() {
  const char* value = std::getenv("CUDA_VISIBLE_DEVICES");
  return value ? std::string("CUDA_VISIBLE_DEVICES=") + value : "CUDA_VISIBLE_DEVICES unset";
}

std::unique_ptr<Backend> make_cuda_backend(int local_rank) {
  const int count = cuda::device_count();
  if (count == 0) {
    // device_count() swallows the runtime's reason (no driver, no device...); ask again for it.
    int ignored = 0;
    const cudaError_t status = cudaGetDeviceCount(&ignored);
    cudaGetLastError();
    throw std::runtime_error("run.device: cuda: no CUDA device is visible to this process (" +
                             visible_devices() + "; cudaGetDeviceCount: " +
                             cudaGetErrorName(status) + ")");
  }
  const int cuda_device = local_rank % count;
  try {
    return std::make_unique<cuda::CudaBackend>(cuda_device);
  } catch (const std::exception& e) {
    throw std::runtime_error("run.device: cuda: device " + std::to_string(cuda_device) + ": " +
                             e.what());
  }
}
#endif

}  // namespace

bool cuda_backend_built() {
#if TESSERA_HAVE_CUDA_BACKEND
  return true;
#else
  return false;
#endif
}

int visible_cuda_devices() {
#if TESSERA_HAVE_CUDA_BACKEND
  return cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device, int local_rank) {
  if (local_rank < 0) {
    throw std::invalid_argument("make_backend: negative local rank " + std::to_string(local_rank));
  }
  if (device == "cpu") return std::make_unique<CpuBackend>();
  if (device == "cuda") {
#if TESSERA_HAVE_CUDA_BACKEND
    return make_cuda_backend(local_rank);
#else
    throw std::runtime_error(
        "run.device: cuda: this build of tessera has no CUDA backend (nvcc was not found when "
        "it was configured)");
#endif
  }
  throw std::invalid_argument("run.device: unknown device '" + device +
                              "' (expected cpu or cuda)");
}

}  // namespace tessera::kernels
