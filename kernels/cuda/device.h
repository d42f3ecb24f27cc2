// CUDA device discovery and error checking for the CUDA backend. Host-only: this header can be
// included from plain C++ (g++) translation units that link CUDA::cudart.
//
// Thread-safety: every function here may be called from any thread.
#pragma once

#include <cuda_runtime_api.h>

namespace tessera::kernels::cuda {

// CUDA devices visible to this process; 0 when there is no driver, no device, or any other
// runtime error. Never throws, so callers can probe for a GPU on a CPU-only machine.
int device_count() noexcept;

// device_count() > 0.
bool available() noexcept;

// Throws std::runtime_error "<call> failed: <cudaErrorName>: <cudaGetErrorString>" unless
// status == cudaSuccess.
void check(cudaError_t status, const char* call);

// Checks the launch of the kernel just enqueued (configuration errors, no device...); does not
// wait for the kernel, so errors raised while it runs surface at the next synchronising call.
void check_launch(const char* kernel);

}  // namespace tessera::kernels::cuda

// TESSERA_CUDA_CHECK(cudaMalloc(&p, n)) throws naming the call's source text.
#define TESSERA_CUDA_CHECK(call) ::tessera::kernels::cuda::check((call), #call)
