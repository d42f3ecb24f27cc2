#include "kernels/cuda/swiglu.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "kernels/swiglu.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

// a and b are the two halves of a fused [W1; W3] output with padded rows.
constexpr int64_t N = 37, F = 50, kLd = 2 * F + 3;

template <typename T>
void check_swiglu_matches_cpu() {
  const double tol = kDeviceTolerance<T>;
  const auto ab = random_as<T>(N * kLd, 21, -4.0, 4.0), dh = random_as<T>(N * F, 22);
  const auto dab0 = random_as<T>(N * kLd, 23);  // padding of da|db must survive

  std::vector<T> h(N * F);
  auto dab = dab0;
  swiglu_forward(h.data(), ab.data(), ab.data() + F, kLd, N, F);
  swiglu_backward(dab.data(), dab.data() + F, dh.data(), ab.data(), ab.data() + F, kLd, N, F);

  DeviceBuffer<T> d_ab(ab), d_dh(dh), d_h(N * F), d_dab(dab0);
  cuda::swiglu_forward(d_h.data(), d_ab.data(), d_ab.data() + F, kLd, N, F);
  cuda::swiglu_backward(d_dab.data(), d_dab.data() + F, d_dh.data(), d_ab.data(),
                        d_ab.data() + F, kLd, N, F);
  EXPECT_LE(rel_error(fetch(d_h), h), tol);
  EXPECT_LE(rel_error(fetch(d_dab), dab), tol);
}

TEST(CudaSwiGlu, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_swiglu_matches_cpu<float>();
  check_swiglu_matches_cpu<double>();
}

TEST(CudaSwiGlu, RejectsShortRowStrideBeforeLaunching) {
  EXPECT_THROW(cuda::swiglu_forward<float>(nullptr, nullptr, nullptr, 9, 2, 10),
               std::invalid_argument);
  EXPECT_THROW(cuda::swiglu_backward<double>(nullptr, nullptr, nullptr, nullptr, nullptr, 9, 2,
                                             10),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
