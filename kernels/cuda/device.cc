#include "kernels/cuda/device.h"

#include <stdexcept>
#include <string>

namespace tessera::kernels::cuda {

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear it where the error is not sticky (driver but no device)
    return 0;
  }
  return count;
}

bool available() noexcept { return device_count() > 0; }

void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorName(status) + ": " +
                           cudaGetErrorString(status));
}

void check_launch(const char* kernel) {
  check(cudaGetLastError(), (std::string("launch of ") + kernel).c_str());
}

}  // namespace tessera::kernels::cuda
