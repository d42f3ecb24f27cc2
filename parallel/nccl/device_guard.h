// DeviceGuard: makes a CUDA device current for a scope and restores the previous one, so that
// events and streams are created on the communicator's device whatever the calling thread had
// selected.
//
// Thread-safety: the current device is per thread; a guard affects only its own thread.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/device.h"

namespace tessera::parallel::nccl_detail {

class DeviceGuard {
 public:
  // Throws std::runtime_error if `device` cannot be selected.
  explicit DeviceGuard(int device) : device_(device) {
    TESSERA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device_) TESSERA_CUDA_CHECK(cudaSetDevice(device_));
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);  // no throwing from a destructor
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

}  // namespace tessera::parallel::nccl_detail
