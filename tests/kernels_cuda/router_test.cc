#include "kernels/cuda/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/router.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels {
namespace {

using namespace cuda::testing;

constexpr int64_t N = 300;

RouterShape make_shape(int64_t E, int64_t k, int64_t n_group, int64_t topk_group) {
  RouterShape s;
  s.n_experts = E;
  s.top_k = k;
  s.n_group = n_group;
  s.topk_group = topk_group;
  s.route_scale = 2.5;
  return s;
}

// The selection must not hinge on rounding, which differs between the devices' exp. Each
// token's logits are a random permutation of an even grid on [-2, 2], so its scores are at
// least ~1.6e-3 apart, and a bias of 1 on a random quarter of the experts lifts those above
// every unbiased one (scores lie in (0.11, 0.89)).
struct RouterInputs {
  std::vector<double> logits, bias;
};

RouterInputs make_inputs(int64_t E, uint64_t seed) {
  std::mt19937_64 rng(seed);
  RouterInputs in;
  std::vector<double> grid(E);
  for (int64_t e = 0; e < E; ++e) grid[e] = -2.0 + 4.0 * static_cast<double>(e) / (E - 1);
  for (int64_t n = 0; n < N; ++n) {
    std::shuffle(grid.begin(), grid.end(), rng);
    in.logits.insert(in.logits.end(), grid.begin(), grid.end());
  }
  std::bernoulli_distribution lifted(0.25);
  for (int64_t e = 0; e < E; ++e) in.bias.push_back(lifted(rng) ? 1.0 : 0.0);
  return in;
}

// Smallest gap, over the tokens, between the last kept group's score and the best dropped one
// (groups are ranked by sums of two scores, which the grid does not keep apart).
double min_group_margin(const RouterInputs& in, const RouterShape& s) {
  if (s.n_group == 1) return INFINITY;
  const int64_t E = s.n_experts, gsize = E / s.n_group;
  double margin = INFINITY;
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> gscore;
    for (int64_t g = 0; g < s.n_group; ++g) {
      std::vector<double> b;
      for (int64_t e = g * gsize; e < (g + 1) * gsize; ++e) {
        b.push_back(1.0 / (1.0 + std::exp(-in.logits[n * E + e])) + in.bias[e]);
      }
      std::sort(b.begin(), b.end(), std::greater<>());
      gscore.push_back(b[0] + b[1]);
    }
    std::sort(gscore.begin(), gscore.end(), std::greater<>());
    margin = std::min(margin, gscore[s.topk_group - 1] - gscore[s.topk_group]);
  }
  return margin;
}

template <typename T>
void check_router_matches_cpu(const RouterShape& s, uint64_t seed) {
  const double tol = kDeviceTolerance<T>;
  const int64_t E = s.n_experts, k = s.top_k;
  const RouterInputs in = make_inputs(E, seed);
  // Float rounds a group score (< 4) by well under 1e-6.
  ASSERT_GT(min_group_margin(in, s), 1e-5) << "inputs too close to a tie; pick another seed";
  const std::vector<T> logits(in.logits.begin(), in.logits.end());
  const std::vector<T> bias(in.bias.begin(), in.bias.end());

  std::vector<T> scores(N * E), gates(N * k);
  std::vector<int32_t> idx(N * k);
  router_forward(scores.data(), idx.data(), gates.data(), logits.data(), bias.data(), N, s);

  DeviceBuffer<T> d_logits(logits), d_bias(bias), d_scores(N * E), d_gates(N * k);
  DeviceBuffer<int32_t> d_idx(N * k);
  cuda::router_forward(d_scores.data(), d_idx.data(), d_gates.data(), d_logits.data(),
                       d_bias.data(), N, s);
  EXPECT_EQ(fetch(d_idx), idx);
  EXPECT_LE(rel_error(fetch(d_scores), scores), tol);
  EXPECT_LE(rel_error(fetch(d_gates), gates), tol);

  // Backward from the CPU's forward state, with and without the balance-loss term.
  const auto dgates = random_as<T>(N * k, seed + 1), dextra = random_as<T>(N * E, seed + 2);
  std::vector<T> dlogits(N * E), dlogits_extra(N * E);
  router_backward<T>(dlogits.data(), dgates.data(), nullptr, scores.data(), idx.data(), N, s);
  router_backward(dlogits_extra.data(), dgates.data(), dextra.data(), scores.data(), idx.data(),
                  N, s);

  DeviceBuffer<T> d_dgates(dgates), d_dextra(dextra), d_cpu_scores(scores);
  DeviceBuffer<T> d_dlogits(N * E), d_dlogits_extra(N * E);
  DeviceBuffer<int32_t> d_cpu_idx(idx);
  cuda::router_backward<T>(d_dlogits.data(), d_dgates.data(), nullptr,
                        d_cpu_scores.data(), d_cpu_idx.data(), N, s);
  cuda::router_backward(d_dlogits_extra.data(), d_dgates.data(), d_dextra.data(),
                        d_cpu_scores.data(), d_cpu_idx.data(), N, s);
  EXPECT_LE(rel_error(fetch(d_dlogits), dlogits), tol);
  EXPECT_LE(rel_error(fetch(d_dlogits_extra), dlogits_extra), tol);
}

TEST(CudaRouter, MatchesCpuUngrouped) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_router_matches_cpu<float>(make_shape(16, 4, 1, 1), 51);
  check_router_matches_cpu<double>(make_shape(16, 4, 1, 1), 51);
}

// DeepSeek-V3's routing shape: 256 experts in 8 groups, 4 groups kept, top-8 (the largest E
// the per-thread arrays allow).
TEST(CudaRouter, MatchesCpuGroupLimitedV3Shape) {
  TESSERA_SKIP_WITHOUT_CUDA();
  check_router_matches_cpu<float>(make_shape(256, 8, 8, 4), 52);
  check_router_matches_cpu<double>(make_shape(256, 8, 8, 4), 52);
}

TEST(CudaRouter, BadExpertIndexGivesNanRowNotAnOutOfBoundsRead) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const RouterShape s = make_shape(16, 4, 1, 1);
  const int64_t E = 16, k = 4;
  std::vector<int32_t> idx(N * k);
  for (int64_t i = 0; i < N * k; ++i) idx[i] = static_cast<int32_t>(i % E);
  idx[1] = static_cast<int32_t>(E);
  DeviceBuffer<float> d_dgates(random_as<float>(N * k, 53));
  DeviceBuffer<float> d_scores(random_as<float>(N * E, 54, 0.1, 0.9)), d_dlogits(N * E);
  DeviceBuffer<int32_t> d_idx(idx);
  cuda::router_backward<float>(d_dlogits.data(), d_dgates.data(), nullptr,
                        d_scores.data(), d_idx.data(), N, s);
  const auto dlogits = fetch(d_dlogits);
  EXPECT_TRUE(std::isnan(dlogits[3]));
  for (int64_t i = E; i < N * E; ++i) ASSERT_FALSE(std::isnan(dlogits[i])) << "element " << i;
}

TEST(CudaRouter, RejectsBadShapesBeforeLaunching) {
  auto forward = [](const RouterShape& s) {
    cuda::router_forward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 4, s);
  };
  EXPECT_THROW(forward(make_shape(257, 8, 1, 1)), std::invalid_argument);  // > kRouterMaxExperts
  EXPECT_THROW(forward(make_shape(16, 4, 3, 1)), std::invalid_argument);   // 3 does not divide 16
  EXPECT_THROW(forward(make_shape(16, 4, 4, 5)), std::invalid_argument);   // topk_group > n_group
  EXPECT_THROW(forward(make_shape(16, 9, 4, 2)), std::invalid_argument);   // k > reachable
  EXPECT_THROW(cuda::router_backward<double>(nullptr, nullptr, nullptr, nullptr, nullptr, 4,
                                             make_shape(16, 0, 1, 1)),
               std::invalid_argument);
}

}  // namespace
}  // namespace tessera::kernels
