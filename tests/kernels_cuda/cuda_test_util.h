// Helpers for the CUDA backend tests. A test that needs a GPU starts with
// TESSERA_SKIP_WITHOUT_CUDA(), so the suite builds everywhere nvcc exists and reports SKIPPED
// (with the reason) on machines without a device. Tests of host-side argument checks need no
// device and always run.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"
#include "tests/kernels/test_util.h"

#define TESSERA_SKIP_WITHOUT_CUDA()           \
  if (!::tessera::kernels::cuda::available()) \
  GTEST_SKIP() << "no CUDA device: CUDA kernels compiled but not run"

namespace tessera::kernels::cuda::testing {

// What every CUDA test uses besides these helpers, so a test needs one
// `using namespace cuda::testing;`.
using cuda::DeviceBuffer;
using kernels::testing::rel_error;

// CUDA vs CPU on the same inputs. Both run the same math functions, but the device's exp/log
// and its fused multiply-adds round differently, so they agree to rounding, not bitwise.
template <typename T>
constexpr double kDeviceTolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;

template <typename T>
std::vector<T> random_as(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const std::vector<double> v = kernels::testing::random_vector(n, seed, lo, hi);
  return std::vector<T>(v.begin(), v.end());
}

// Waits for all device work, then copies back: a kernel that failed surfaces here as an
// exception naming the call.
template <typename T>
std::vector<T> fetch(const DeviceBuffer<T>& buffer) {
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  return buffer.to_host();
}

}  // namespace tessera::kernels::cuda::testing
