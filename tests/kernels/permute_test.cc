#include "kernels/permute.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

constexpr int64_t N = 6, k = 2, E = 5, C = 3;
// Expert 3 gets no tokens; expert 1 is chosen by several tokens.
const std::vector<int32_t> kIdx = {1, 4, 0, 1, 4, 2, 1, 0, 2, 4, 0, 1};

struct Perm {
  std::vector<int32_t> pos_of_slot = std::vector<int32_t>(N * k);
  std::vector<int32_t> slot_of_pos = std::vector<int32_t>(N * k);
  std::vector<int64_t> counts = std::vector<int64_t>(E, -1);
};

Perm build() {
  Perm p;
  moe_build_permutation(p.pos_of_slot.data(), p.slot_of_pos.data(), p.counts.data(), kIdx.data(),
                        N, k, E);
  return p;
}

TEST(Permute, BuildIsAStableSortByExpert) {
  const Perm p = build();
  std::vector<int32_t> ref(N * k);
  std::iota(ref.begin(), ref.end(), 0);
  std::stable_sort(ref.begin(), ref.end(), [](int32_t a, int32_t b) { return kIdx[a] < kIdx[b]; });
  EXPECT_EQ(p.slot_of_pos, ref);
  for (int64_t s = 0; s < N * k; ++s) EXPECT_EQ(p.slot_of_pos[p.pos_of_slot[s]], s);
  EXPECT_EQ(p.counts, (std::vector<int64_t>{3, 4, 2, 0, 3}));
}

TEST(Permute, RejectsBadExpert) {
  Perm p;
  std::vector<int32_t> bad = kIdx;
  bad[5] = E;
  EXPECT_THROW(moe_build_permutation(p.pos_of_slot.data(), p.slot_of_pos.data(), p.counts.data(),
                                     bad.data(), N, k, E),
               std::out_of_range);
}

TEST(Permute, GathersRowsAndBackwardIsTheAdjoint) {
  const Perm p = build();
  const auto x = random_vector(N * C, 1);
  std::vector<double> xp(N * k * C);
  moe_permute(xp.data(), x.data(), p.slot_of_pos.data(), N, k, C);
  for (int64_t pos = 0; pos < N * k; ++pos)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(xp[pos * C + c], x[(p.slot_of_pos[pos] / k) * C + c]);

  // <permute(x), z> == <x, permute_backward(z)>
  const auto z = random_vector(N * k * C, 2);
  std::vector<double> dx(N * C, 9.0);
  moe_permute_backward(dx.data(), z.data(), p.pos_of_slot.data(), N, k, C);
  EXPECT_NEAR(testing::dot(xp, z), testing::dot(x, dx), 1e-13);
  // Finite differences as well (the map is linear, so FD is exact up to rounding).
  auto xv = x;
  auto loss = [&] {
    std::vector<double> out(N * k * C);
    moe_permute(out.data(), xv.data(), p.slot_of_pos.data(), N, k, C);
    return testing::dot(out, z);
  };
  EXPECT_LE(rel_error(dx, testing::numeric_grad(xv, loss)), testing::kFdTolerance);

  const auto dx0 = random_vector(N * C, 3);
  auto acc = dx0;
  moe_permute_backward(acc.data(), z.data(), p.pos_of_slot.data(), N, k, C, true);
  for (int64_t i = 0; i < N * C; ++i) EXPECT_NEAR(acc[i] - dx0[i], dx[i], 1e-15);
}

TEST(Permute, CombineAndItsBackward) {
  const Perm p = build();
  auto yp = random_vector(N * k * C, 4);
  auto gates = random_vector(N * k, 5, 0.1, 1.0);
  const auto dy = random_vector(N * C, 6);
  std::vector<double> y(N * C, 3.0);
  moe_unpermute_combine(y.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      double ref = 0;
      for (int64_t j = 0; j < k; ++j) ref += gates[n * k + j] * yp[p.pos_of_slot[n * k + j] * C + c];
      EXPECT_NEAR(y[n * C + c], ref, 1e-15);
    }
  }
  auto acc = random_vector(N * C, 7);
  const auto acc0 = acc;
  moe_unpermute_combine(acc.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C, true);
  for (int64_t i = 0; i < N * C; ++i) EXPECT_NEAR(acc[i] - acc0[i], y[i], 1e-15);

  auto loss = [&] {
    std::vector<double> out(N * C);
    moe_unpermute_combine(out.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C);
    return testing::dot(out, dy);
  };
  const auto g_yp = testing::numeric_grad(yp, loss);
  const auto g_gates = testing::numeric_grad(gates, loss);
  std::vector<double> dyp(N * k * C, 8.0), dgates(N * k, 8.0);
  moe_unpermute_combine_backward(dyp.data(), dgates.data(), dy.data(), yp.data(), gates.data(),
                                 p.pos_of_slot.data(), N, k, C);
  EXPECT_LE(rel_error(dyp, g_yp), testing::kFdTolerance);
  EXPECT_LE(rel_error(dgates, g_gates), testing::kFdTolerance);
}

// Gates summing to 1 make combine(permute(x)) the identity: the dispatch/combine round trip.
TEST(Permute, CombineOfPermuteIsIdentityForNormalisedGates) {
  const Perm p = build();
  const auto x = random_vector(N * C, 8);
  auto gates = random_vector(N * k, 9, 0.1, 1.0);
  for (int64_t n = 0; n < N; ++n) {
    const double s = gates[n * k] + gates[n * k + 1];
    gates[n * k] /= s;
    gates[n * k + 1] /= s;
  }
  std::vector<double> xp(N * k * C), y(N * C);
  moe_permute(xp.data(), x.data(), p.slot_of_pos.data(), N, k, C);
  moe_unpermute_combine(y.data(), xp.data(), gates.data(), p.pos_of_slot.data(), N, k, C);
  EXPECT_LE(rel_error(y, x), 1e-15);
}

TEST(Permute, Fp32MatchesFp64) {
  const Perm p = build();
  const auto yp = testing::float_exact(random_vector(N * k * C, 10));
  const auto gates = testing::float_exact(random_vector(N * k, 11));
  const auto dy = testing::float_exact(random_vector(N * C, 12));
  const auto ypf = testing::to_float(yp), gf = testing::to_float(gates), dyf = testing::to_float(dy);
  std::vector<double> y(N * C), dyp(N * k * C), dg(N * k);
  std::vector<float> yf(N * C), dypf(N * k * C), dgf(N * k);
  moe_unpermute_combine(y.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, C);
  moe_unpermute_combine(yf.data(), ypf.data(), gf.data(), p.pos_of_slot.data(), N, k, C);
  moe_unpermute_combine_backward(dyp.data(), dg.data(), dy.data(), yp.data(), gates.data(),
                                 p.pos_of_slot.data(), N, k, C);
  moe_unpermute_combine_backward(dypf.data(), dgf.data(), dyf.data(), ypf.data(), gf.data(),
                                 p.pos_of_slot.data(), N, k, C);
  EXPECT_LE(rel_error(yf, y), testing::kF32Tolerance);
  EXPECT_LE(rel_error(dypf, dyp), testing::kF32Tolerance);
  EXPECT_LE(rel_error(dgf, dg), testing::kF32Tolerance);
}

// The float rows run vectorised, the gate gradient's dot product in 16 partial sums: rows of
// several vectors and a tail (C = 53) match double, every op, written and accumulated.
TEST(Permute, Fp32VectorRowsMatchFp64) {
  constexpr int64_t kC = 53;
  const Perm p = build();
  const auto x = testing::float_exact(random_vector(N * kC, 20));
  const auto yp = testing::float_exact(random_vector(N * k * kC, 21));
  const auto gates = testing::float_exact(random_vector(N * k, 22));
  const auto dy = testing::float_exact(random_vector(N * kC, 23));
  const auto base = testing::float_exact(random_vector(N * kC, 24));
  const auto xf = testing::to_float(x), ypf = testing::to_float(yp);
  const auto gf = testing::to_float(gates), dyf = testing::to_float(dy);
  for (bool accumulate : {false, true}) {
    std::vector<double> y = base, dx = base;
    std::vector<float> yf = testing::to_float(base), dxf = testing::to_float(base);
    moe_unpermute_combine(y.data(), yp.data(), gates.data(), p.pos_of_slot.data(), N, k, kC,
                          accumulate);
    moe_unpermute_combine(yf.data(), ypf.data(), gf.data(), p.pos_of_slot.data(), N, k, kC,
                          accumulate);
    moe_permute_backward(dx.data(), yp.data(), p.pos_of_slot.data(), N, k, kC, accumulate);
    moe_permute_backward(dxf.data(), ypf.data(), p.pos_of_slot.data(), N, k, kC, accumulate);
    EXPECT_LE(rel_error(yf, y), testing::kF32Tolerance) << accumulate;
    EXPECT_LE(rel_error(dxf, dx), testing::kF32Tolerance) << accumulate;
  }
  std::vector<double> xp(N * k * kC), dyp(N * k * kC), dg(N * k);
  std::vector<float> xpf(N * k * kC), dypf(N * k * kC), dgf(N * k);
  moe_permute(xp.data(), x.data(), p.slot_of_pos.data(), N, k, kC);
  moe_permute(xpf.data(), xf.data(), p.slot_of_pos.data(), N, k, kC);
  EXPECT_EQ(xpf, testing::to_float(xp));  // a copy is exact
  moe_unpermute_combine_backward(dyp.data(), dg.data(), dy.data(), yp.data(), gates.data(),
                                 p.pos_of_slot.data(), N, k, kC);
  moe_unpermute_combine_backward(dypf.data(), dgf.data(), dyf.data(), ypf.data(), gf.data(),
                                 p.pos_of_slot.data(), N, k, kC);
  EXPECT_LE(rel_error(dypf, dyp), testing::kF32Tolerance);
  EXPECT_LE(rel_error(dgf, dg), testing::kF32Tolerance);
}

}  // namespace
}  // namespace tessera::kernels
