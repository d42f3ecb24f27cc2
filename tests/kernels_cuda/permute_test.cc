#include "kernels/cuda/permute.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/permute.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

constexpr int64_t N = 300, k = 4, E = 16, C = 24;

struct Perm {
  std::vector<int32_t> pos_of_slot = std::vector<int32_t>(N * k);
  std::vector<int32_t> slot_of_pos = std::vector<int32_t>(N * k);
};

// k distinct experts per token, as the router picks them; built on the host as in training.
Perm random_permutation(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> experts(E), idx;
  for (int32_t e = 0; e < E; ++e) experts[e] = e;
  for (int64_t n = 0; n < N; ++n) {
    std::shuffle(experts.begin(), experts.end(), rng);
    idx.insert(idx.end(), experts.begin(), experts.begin() + k);
  }
  Perm p;
  std::vector<int64_t> counts(E);
  moe_build_permutation(p.pos_of_slot.data(), p.slot_of_pos.data(), counts.data(), idx.data(), N,
                        k, E);
  return p;
}

template <typename T>
void check_permute_matches_cpu() {
  const double tol = kDeviceTolerance<T>;
  const Perm p = random_permutation(61);
  const auto x = random_as<T>(N * C, 62), dxp = random_as<T>(N * k * C, 63);
  const auto yp = random_as<T>(N * k * C, 64), gates = random_as<T>(N * k, 65, 0.0, 1.0);
  const auto dy = random_as<T>(N * C, 66), base = random_as<T>(N * C, 67);

  std::vector<T> xp(N * k * C), dx(N * C), y(N * C), dyp(N * k * C), dgates(N * k);
  auto dx_acc = base, y_acc = base;
  moe_permute(xp.data(), x.data(), p.slot_of_pos.data(), N, k, C);
  moe_permute_backward(dx.data(), dxp.data(), p.pos_of_slot.data(), N, k, C);
  moe_permute_backward(dx_acc.data(), dxp.data(), p.pos_of_slot.data(), N, k, C, true);
  moe_unpermute_combine(y.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C);
  moe_unpermute_combine(y_acc.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C,
                        true);
  moe_unpermute_combine_backward(dyp.data(), dgates.data(), dy.data(), yp.data(), gates.data(),
                                 p.pos_of_slot.data(), N, k, C);

  DeviceBuffer<int32_t> d_pos(p.pos_of_slot), d_slot(p.slot_of_pos);
  DeviceBuffer<T> d_x(x), d_dxp(dxp), d_yp(yp), d_gates(gates), d_dy(dy);
  DeviceBuffer<T> d_xp(N * k * C), d_dx(N * C), d_y(N * C), d_dyp(N * k * C), d_dgates(N * k);
  DeviceBuffer<T> d_dx_acc(base), d_y_acc(base);
  cuda::moe_permute(d_xp.data(), d_x.data(), d_slot.data(), N, k, C);
  cuda::moe_permute_backward(d_dx.data(), d_dxp.data(), d_pos.data(), N, k, C);
  cuda::moe_permute_backward(d_dx_acc.data(), d_dxp.data(), d_pos.data(), N, k, C, true);
  cuda::moe_unpermute_combine(d_y.data(), d_yp.data(), d_gates.data(), d_pos.data(), N, k, C);
  cuda::moe_unpermute_combine(d_y_acc.data(), d_yp.data(), d_gates.data(), d_pos.data(), N, k, C,
                              true);
  cuda::moe_unpermute_combine_backward(d_dyp.data(), d_dgates.data(), d_dy.data(), d_yp.data(),
                                       d_gates.data(), d_pos.data(), N, k, C);

  EXPECT_EQ(fetch(d_xp), xp);  // a copy is exact
  EXPECT_LE(rel_error(fetch(d_dx), dx), tol);
  EXPECT_LE(rel_error(fetch(d_dx_acc), dx_acc), tol);
  EXPECT_LE(rel_error(fetch(d_y), y), tol);
  EXPECT_LE(rel_error(fetch(d_y_acc), y_acc), tol);
  EXPECT_LE(rel_error(fetch(d_dyp), dyp), tol);
  EXPECT_LE(rel_error(fetch(d_dgates), dgates), tol);
}

TEST(CudaPermute, MatchesCpu) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_permute_matches_cpu<float>();
  check_permute_matches_cpu<double>();
}

TEST(CudaPermute, BadPositionGivesNanRowsNotAnOutOfBoundsRead) {
  TESSERA_SKIP_WITHOUT_CUDA();
  Perm p = random_permutation(68);
  p.pos_of_slot[1] = static_cast<int32_t>(N * k);   // token 0
  p.slot_of_pos[2] = -1;                            // permuted row 2
  DeviceBuffer<int32_t> d_pos(p.pos_of_slot), d_slot(p.slot_of_pos);
  DeviceBuffer<float> d_x(random_as<float>(N * C, 69)), d_xp(N * k * C);
  DeviceBuffer<float> d_yp(random_as<float>(N * k * C, 70)), d_y(N * C), d_dy(N * C);
  DeviceBuffer<float> d_gates(random_as<float>(N * k, 71)), d_dgates(N * k), d_dyp(N * k * C);
  d_dy.copy_from(random_as<float>(N * C, 72));
  cuda::moe_permute(d_xp.data(), d_x.data(), d_slot.data(), N, k, C);
  cuda::moe_unpermute_combine(d_y.data(), d_yp.data(), d_gates.data(), d_pos.data(), N, k, C);
  cuda::moe_unpermute_combine_backward(d_dyp.data(), d_dgates.data(), d_dy.data(), d_yp.data(),
                                       d_gates.data(), d_pos.data(), N, k, C);
  const auto xp = fetch(d_xp), y = fetch(d_y), dgates = fetch(d_dgates);
  EXPECT_TRUE(std::isnan(xp[2 * C]));
  EXPECT_FALSE(std::isnan(xp[3 * C]));
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_FALSE(std::isnan(y[C]));
  EXPECT_TRUE(std::isnan(dgates[0]));
  EXPECT_FALSE(std::isnan(dgates[k]));
}

}  // namespace
}  // namespace tessera::kernels
