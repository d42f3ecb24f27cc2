#include "kernels/linear.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::kF32Tolerance;
using testing::kFdTolerance;
using testing::numeric_grad;
using testing::random_vector;
using testing::rel_error;

constexpr int64_t N = 5, I = 7, O = 4;

TEST(Linear, ForwardMatchesLoop) {
  auto x = random_vector(N * I, 1), W = random_vector(O * I, 2);
  std::vector<double> y(N * O);
  linear_forward(y.data(), x.data(), W.data(), N, I, O);
  std::vector<double> ref(N * O, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) ref[n * O + o] += x[n * I + i] * W[o * I + i];
  EXPECT_LE(rel_error(y, ref), 1e-14);
}

TEST(Linear, BackwardMatchesFiniteDifferencesAndAccumulates) {
  auto x = random_vector(N * I, 3), W = random_vector(O * I, 4), dy = random_vector(N * O, 5);
  auto loss = [&] {
    std::vector<double> y(N * O);
    linear_forward(y.data(), x.data(), W.data(), N, I, O);
    return testing::dot(dy, y);
  };
  const auto gx = numeric_grad(x, loss);
  const auto gW = numeric_grad(W, loss);

  std::vector<double> dx(N * I, 99.0);
  linear_backward_input(dx.data(), dy.data(), W.data(), N, I, O);
  EXPECT_LE(rel_error(dx, gx), kFdTolerance);

  const auto dx0 = random_vector(N * I, 6);
  auto dx_acc = dx0;
  linear_backward_input(dx_acc.data(), dy.data(), W.data(), N, I, O, /*accumulate=*/true);
  for (int64_t i = 0; i < N * I; ++i) dx_acc[i] -= dx0[i];
  EXPECT_LE(rel_error(dx_acc, gx), kFdTolerance);

  const auto dW0 = random_vector(O * I, 7);
  auto dW = dW0;
  linear_backward_weight(dW.data(), dy.data(), x.data(), N, I, O);  // accumulates
  for (int64_t i = 0; i < O * I; ++i) dW[i] -= dW0[i];
  EXPECT_LE(rel_error(dW, gW), kFdTolerance);
}

TEST(Linear, Fp32MatchesFp64) {
  auto x = testing::float_exact(random_vector(N * I, 8));
  auto W = testing::float_exact(random_vector(O * I, 9));
  auto dy = testing::float_exact(random_vector(N * O, 10));
  auto xf = testing::to_float(x), Wf = testing::to_float(W), dyf = testing::to_float(dy);
  std::vector<double> y(N * O), dx(N * I), dW(O * I, 0.0);
  std::vector<float> yf(N * O), dxf(N * I), dWf(O * I, 0.0f);
  linear_forward(y.data(), x.data(), W.data(), N, I, O);
  linear_forward(yf.data(), xf.data(), Wf.data(), N, I, O);
  linear_backward_input(dx.data(), dy.data(), W.data(), N, I, O);
  linear_backward_input(dxf.data(), dyf.data(), Wf.data(), N, I, O);
  linear_backward_weight(dW.data(), dy.data(), x.data(), N, I, O);
  linear_backward_weight(dWf.data(), dyf.data(), xf.data(), N, I, O);
  EXPECT_LE(rel_error(yf, y), kF32Tolerance);
  EXPECT_LE(rel_error(dxf, dx), kF32Tolerance);
  EXPECT_LE(rel_error(dWf, dW), kF32Tolerance);
}

}  // namespace
}  // namespace tessera::kernels
