#include "kernels/cuda/adamw.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "kernels/adamw.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

constexpr int64_t kN = 5000;

// Three steps on both devices from the same state; decay and grad_scale both exercised.
template <typename T>
void check_adamw_matches_cpu(bool decay) {
  const double tol = kDeviceTolerance<T>;
  auto p = random_as<T>(kN, 41), m = std::vector<T>(kN, T(0)), v = std::vector<T>(kN, T(0));
  DeviceBuffer<T> d_p(p), d_m(m), d_v(v), d_g(kN);
  AdamWStep hp;
  hp.lr = 3e-3;
  hp.weight_decay = 0.1;
  for (int64_t step = 1; step <= 3; ++step) {
    hp.step = step;
    const auto g = random_as<T>(kN, 41 + step, -0.1, 0.1);
    const T grad_scale = step == 2 ? T(0.5) : T(1);
    adamw_update(p.data(), g.data(), m.data(), v.data(), kN, hp, decay, grad_scale);
    d_g.copy_from(g);
    cuda::adamw_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), kN, hp, decay,
                       grad_scale);
  }
  EXPECT_LE(rel_error(fetch(d_p), p), tol);
  EXPECT_LE(rel_error(fetch(d_m), m), tol);
  EXPECT_LE(rel_error(fetch(d_v), v), tol);
}

TEST(CudaAdamW, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  for (bool decay : {true, false}) {
    SCOPED_TRACE(decay ? "decay" : "no decay");
    check_adamw_matches_cpu<float>(decay);
    check_adamw_matches_cpu<double>(decay);
  }
}

TEST(CudaAdamW, RejectsStepZeroBeforeLaunching) {
  AdamWStep hp;
  hp.step = 0;
  EXPECT_THROW(cuda::adamw_update<float>(nullptr, nullptr, nullptr, nullptr, 8, hp, true),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
