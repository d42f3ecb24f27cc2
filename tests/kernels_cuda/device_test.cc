#include "kernels/cuda/device.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

// Runs everywhere: probing for a GPU on a CPU-only machine must answer 0, not throw.
TEST(CudaDevice, CountNeverThrowsAndAgreesWithAvailable) {
  int count = -1;
  EXPECT_NO_THROW(count = cuda::device_count());
  EXPECT_GE(count, 0);
  EXPECT_EQ(cuda::available(), count > 0);
}

TEST(CudaDevice, CheckNamesTheCallAndTheError) {
  EXPECT_NO_THROW(cuda::check(cudaSuccess, "cudaMalloc(&p, 4)"));
  try {
    cuda::check(cudaErrorInvalidValue, "cudaMemcpy(dst, src, n, kind)");
    FAIL() << "check() did not throw";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaMemcpy(dst, src, n, kind)"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaErrorInvalidValue"), std::string::npos) << what;
    EXPECT_NE(what.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << what;
  }
}

TEST(CudaDevice, BufferRoundTrip) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const std::vector<double> host = {1.5, -2.0, 3.25, 0.0, 1e300};
  cuda::DeviceBuffer<double> buffer(host);
  EXPECT_EQ(buffer.size(), 5);
  EXPECT_EQ(buffer.to_host(), host);
  cuda::DeviceBuffer<double> moved = std::move(buffer);
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_EQ(moved.to_host(), host);
  EXPECT_THROW(moved.copy_from(std::vector<double>(4)), std::invalid_argument);
  EXPECT_TRUE(cuda::DeviceBuffer<float>(0).to_host().empty());
}

}  // namespace
}  // namespace tessera::kernels
