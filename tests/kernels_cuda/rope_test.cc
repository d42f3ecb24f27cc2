#include "kernels/cuda/rope.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "kernels/rope.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

constexpr int64_t B = 3, T_len = 50, H = 4, hd = 16;
constexpr int64_t kLd = H * hd + 5;  // padded rows, as q inside a fused q|k|v buffer

template <typename T>
void check_rope_matches_cpu() {
  const double tol = kDeviceTolerance<T>;
  std::vector<T> cos_table(T_len * hd / 2), sin_table(T_len * hd / 2);
  rope_table(cos_table.data(), sin_table.data(), T_len, hd, 10000.0);
  // Whole buffers are compared, so the padding must come back untouched on both devices.
  const auto x0 = random_as<T>(B * T_len * kLd, 11);

  auto fwd = x0, bwd = x0;
  rope_forward(fwd.data(), kLd, cos_table.data(), sin_table.data(), B, T_len, H, hd);
  rope_backward(bwd.data(), kLd, cos_table.data(), sin_table.data(), B, T_len, H, hd);

  DeviceBuffer<T> d_cos(cos_table), d_sin(sin_table), d_fwd(x0), d_bwd(x0);
  cuda::rope_forward(d_fwd.data(), kLd, d_cos.data(), d_sin.data(), B, T_len, H, hd);
  cuda::rope_backward(d_bwd.data(), kLd, d_cos.data(), d_sin.data(), B, T_len, H, hd);
  EXPECT_LE(rel_error(fetch(d_fwd), fwd), tol);
  EXPECT_LE(rel_error(fetch(d_bwd), bwd), tol);
}

TEST(CudaRope, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_rope_matches_cpu<float>();
  check_rope_matches_cpu<double>();
}

// Host-side checks: thrown before any launch, so they need no device.
TEST(CudaRope, RejectsBadShapesBeforeLaunching) {
  EXPECT_THROW(cuda::rope_forward<float>(nullptr, 12, nullptr, nullptr, 1, 1, 4, 3),
               std::invalid_argument);
  EXPECT_THROW(cuda::rope_backward<double>(nullptr, 63, nullptr, nullptr, 1, 1, 4, 16),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
