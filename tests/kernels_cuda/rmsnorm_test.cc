#include "kernels/cuda/rmsnorm.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/rmsnorm.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

// More rows and columns than one block of threads, so the grid tail is exercised.
constexpr int64_t N = 300, C = 147;

template <typename T>
void check_rmsnorm_matches_cpu(cudaStream_t stream) {
  const double tol = kDeviceTolerance<T>;
  const T eps = T(1e-6);
  const auto x = random_as<T>(N * C, 1), w = random_as<T>(C, 2, 0.5, 1.5);
  const auto dy = random_as<T>(N * C, 3), dx0 = random_as<T>(N * C, 4);
  const auto dw0 = random_as<T>(C, 5);

  std::vector<T> y(N * C), rstd(N);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps);
  auto dx = dx0, dx_acc = dx0, dw = dw0;
  rmsnorm_backward_input(dx.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
  rmsnorm_backward_input(dx_acc.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, true);
  rmsnorm_backward_weight(dw.data(), dy.data(), x.data(), rstd.data(), N, C);

  DeviceBuffer<T> d_x(x), d_w(w), d_dy(dy), d_y(N * C), d_rstd(N);
  DeviceBuffer<T> d_dx(dx0), d_dx_acc(dx0), d_dw(dw0);
  cuda::rmsnorm_forward(d_y.data(), d_rstd.data(), d_x.data(), d_w.data(), N, C, eps, stream);
  // The backward reads the device's own rstd, as training does.
  cuda::rmsnorm_backward_input(d_dx.data(), d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(),
                               N, C, false, stream);
  cuda::rmsnorm_backward_input(d_dx_acc.data(), d_dy.data(), d_x.data(), d_w.data(),
                               d_rstd.data(), N, C, true, stream);
  cuda::rmsnorm_backward_weight(d_dw.data(), d_dy.data(), d_x.data(), d_rstd.data(), N, C,
                                stream);

  EXPECT_LE(rel_error(fetch(d_y), y), tol);
  EXPECT_LE(rel_error(fetch(d_rstd), rstd), tol);
  EXPECT_LE(rel_error(fetch(d_dx), dx), tol);
  EXPECT_LE(rel_error(fetch(d_dx_acc), dx_acc), tol);
  EXPECT_LE(rel_error(fetch(d_dw), dw), tol);
}

TEST(CudaRmsNorm, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_rmsnorm_matches_cpu<float>(nullptr);
  check_rmsnorm_matches_cpu<double>(nullptr);
}

TEST(CudaRmsNorm, RunsOnTheGivenStream) {
  TESSERA_SKIP_WITHOUT_CUDA();
  cudaStream_t stream = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  check_rmsnorm_matches_cpu<float>(stream);
  TESSERA_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace tessera::kernels
