#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::kF32Tolerance;
using testing::kFdTolerance;
using testing::numeric_grad;
using testing::random_vector;
using testing::rel_error;

constexpr int64_t N = 4, C = 9;
constexpr double kEps = 1e-6;

TEST(RmsNorm, ForwardMatchesFormula) {
  auto x = random_vector(N * C, 1), w = random_vector(C, 2, 0.5, 1.5);
  std::vector<double> y(N * C), rstd(N);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
  for (int64_t n = 0; n < N; ++n) {
    long double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += (long double)x[n * C + c] * x[n * C + c];
    const double r = 1.0 / std::sqrt(static_cast<double>(ss / C) + kEps);
    EXPECT_NEAR(rstd[n], r, 1e-14 * r);
    for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(y[n * C + c], x[n * C + c] * r * w[c], 1e-14);
  }
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  auto x = random_vector(N * C, 3), w = random_vector(C, 4, 0.5, 1.5);
  auto dy = random_vector(N * C, 5);
  auto loss = [&] {
    std::vector<double> y(N * C), rstd(N);
    rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
    return testing::dot(dy, y);
  };
  const auto gx = numeric_grad(x, loss);
  const auto gw = numeric_grad(w, loss);

  std::vector<double> y(N * C), rstd(N);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
  std::vector<double> dx(N * C, 7.0);
  rmsnorm_backward_input(dx.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
  EXPECT_LE(rel_error(dx, gx), kFdTolerance);

  const auto dx0 = random_vector(N * C, 6);
  auto dx_acc = dx0;
  rmsnorm_backward_input(dx_acc.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, true);
  for (int64_t i = 0; i < N * C; ++i) dx_acc[i] -= dx0[i];
  EXPECT_LE(rel_error(dx_acc, gx), kFdTolerance);

  const auto dw0 = random_vector(C, 7);
  auto dw = dw0;
  rmsnorm_backward_weight(dw.data(), dy.data(), x.data(), rstd.data(), N, C);
  for (int64_t c = 0; c < C; ++c) dw[c] -= dw0[c];
  EXPECT_LE(rel_error(dw, gw), kFdTolerance);
}

TEST(RmsNorm, Fp32MatchesFp64) {
  auto x = testing::float_exact(random_vector(N * C, 8));
  auto w = testing::float_exact(random_vector(C, 9, 0.5, 1.5));
  auto dy = testing::float_exact(random_vector(N * C, 10));
  auto xf = testing::to_float(x), wf = testing::to_float(w), dyf = testing::to_float(dy);
  std::vector<double> y(N * C), r(N), dx(N * C), dw(C, 0.0);
  std::vector<float> yf(N * C), rf(N), dxf(N * C), dwf(C, 0.0f);
  rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), N, C, kEps);
  rmsnorm_forward(yf.data(), rf.data(), xf.data(), wf.data(), N, C, float(kEps));
  rmsnorm_backward_input(dx.data(), dy.data(), x.data(), w.data(), r.data(), N, C);
  rmsnorm_backward_input(dxf.data(), dyf.data(), xf.data(), wf.data(), rf.data(), N, C);
  rmsnorm_backward_weight(dw.data(), dy.data(), x.data(), r.data(), N, C);
  rmsnorm_backward_weight(dwf.data(), dyf.data(), xf.data(), rf.data(), N, C);
  EXPECT_LE(rel_error(yf, y), kF32Tolerance);
  EXPECT_LE(rel_error(rf, r), kF32Tolerance);
  EXPECT_LE(rel_error(dxf, dx), kF32Tolerance);
  EXPECT_LE(rel_error(dwf, dw), kF32Tolerance);
}

// Weight-gradient reductions must not depend on the thread count (large enough to go parallel,
// with several chunks of rows, the last one partial, shared unevenly by 3 threads).
TEST(RmsNorm, WeightGradientIndependentOfThreadCount) {
  testing::ThreadGuard guard;
  constexpr int64_t kN = 600, kC = 200;
  auto x = testing::to_float(random_vector(kN * kC, 11));
  auto dy = testing::to_float(random_vector(kN * kC, 12));
  auto r = testing::to_float(random_vector(kN, 13, 0.5, 2.0));
  std::vector<float> dw1(kC, 0.25f);
  set_cpu_threads(1);
  rmsnorm_backward_weight(dw1.data(), dy.data(), x.data(), r.data(), kN, kC);
  for (int threads : {2, 3}) {
    set_cpu_threads(threads);
    std::vector<float> dw2(kC, 0.25f);
    rmsnorm_backward_weight(dw2.data(), dy.data(), x.data(), r.data(), kN, kC);
    EXPECT_EQ(dw1, dw2) << threads << " threads";
  }
}

}  // namespace
}  // namespace tessera::kernels
