#include "kernels/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

struct Routed {
  std::vector<double> scores, gates;
  std::vector<int32_t> idx;
};

Routed route(const std::vector<double>& logits, const std::vector<double>& bias, int64_t N,
             const RouterShape& shape) {
  Routed r;
  r.scores.resize(N * shape.n_experts);
  r.gates.resize(N * shape.top_k);
  r.idx.resize(N * shape.top_k);
  router_forward(r.scores.data(), r.idx.data(), r.gates.data(), logits.data(), bias.data(), N,
                 shape);
  return r;
}

RouterShape make_shape(int64_t E, int64_t k, int64_t n_group = 1, int64_t topk_group = 1,
                       double route_scale = 1.0) {
  RouterShape s;
  s.n_experts = E;
  s.top_k = k;
  s.n_group = n_group;
  s.topk_group = topk_group;
  s.route_scale = route_scale;
  return s;
}

// Independent reference of the selection rule, written with stable sorts (ties -> lower index).
std::vector<int32_t> reference_select(const double* biased, const RouterShape& s) {
  const int64_t E = s.n_experts, gsize = E / s.n_group;
  std::vector<bool> allowed(E, true);
  if (s.n_group > 1) {
    std::vector<double> gscore(s.n_group);
    for (int64_t g = 0; g < s.n_group; ++g) {
      std::vector<double> vals(biased + g * gsize, biased + (g + 1) * gsize);
      std::sort(vals.begin(), vals.end(), std::greater<>());
      gscore[g] = vals[0] + vals[1];
    }
    std::vector<int64_t> order(s.n_group);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return gscore[a] > gscore[b]; });
    std::vector<bool> kept(s.n_group, false);
    for (int64_t r = 0; r < s.topk_group; ++r) kept[order[r]] = true;
    for (int64_t e = 0; e < E; ++e) allowed[e] = kept[e / gsize];
  }
  std::vector<int32_t> experts;
  for (int32_t e = 0; e < E; ++e) {
    if (allowed[e]) experts.push_back(e);
  }
  std::stable_sort(experts.begin(), experts.end(),
                   [&](int32_t a, int32_t b) { return biased[a] > biased[b]; });
  experts.resize(s.top_k);
  return experts;
}

TEST(Router, GroupLimitingExcludesTheBestSingleExpert) {
  // Groups {0,1} {2,3} {4,5} {6,7}; expert 0 is best alone but its group sums to
  // s(3) + s(-3) = 1 < 2 s(1) (group 1) and < 2 s(0.5) (group 2).
  const std::vector<double> logits = {3.0, -3.0, 1.0, 1.0, 0.5, 0.5, -1.0, -1.0};
  const std::vector<double> bias(8, 0.0);
  const Routed grouped = route(logits, bias, 1, make_shape(8, 2, 4, 2));
  EXPECT_EQ(grouped.idx, (std::vector<int32_t>{2, 3}));  // tie: lower index first
  EXPECT_NEAR(grouped.gates[0], 0.5, 1e-15);
  EXPECT_NEAR(grouped.gates[1], 0.5, 1e-15);
  const Routed flat = route(logits, bias, 1, make_shape(8, 2));
  EXPECT_EQ(flat.idx, (std::vector<int32_t>{0, 2}));
  // Three experts from the two kept groups, in descending score.
  const Routed three = route(logits, bias, 1, make_shape(8, 3, 4, 2));
  EXPECT_EQ(three.idx, (std::vector<int32_t>{2, 3, 4}));
}

TEST(Router, BiasSelectsButGatesUseUnbiasedScores) {
  const std::vector<double> logits = {2.0, 1.0, 0.0, -1.0};
  const std::vector<double> bias = {0.0, 0.0, 5.0, 0.0};
  const double rs = 2.5;
  const Routed r = route(logits, bias, 1, make_shape(4, 2, 1, 1, rs));
  EXPECT_EQ(r.idx, (std::vector<int32_t>{2, 0}));
  const double s0 = 1.0 / (1.0 + std::exp(-0.0)), s2 = 1.0 / (1.0 + std::exp(-2.0));
  EXPECT_NEAR(r.gates[0], rs * s0 / (s0 + s2), 1e-15);
  EXPECT_NEAR(r.gates[1], rs * s2 / (s0 + s2), 1e-15);
  for (int e = 0; e < 4; ++e) {
    EXPECT_NEAR(r.scores[e], 1.0 / (1.0 + std::exp(-logits[e])), 1e-15);
  }
}

TEST(Router, TiesGoToLowerIndices) {
  const std::vector<double> zeros(8, 0.0);
  EXPECT_EQ(route(zeros, zeros, 1, make_shape(8, 3)).idx, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(route(zeros, zeros, 1, make_shape(8, 3, 4, 2)).idx, (std::vector<int32_t>{0, 1, 2}));
  // Groups 1 and 3 tie for the best group sum: group 1 wins.
  const std::vector<double> logits = {0, 0, 1, 1, 0, 0, 1, 1};
  EXPECT_EQ(route(logits, zeros, 1, make_shape(8, 2, 4, 1)).idx, (std::vector<int32_t>{2, 3}));
  // sigmoid(0) = 0.5 exactly: equal biased scores 0.75 at experts 1 and 3 -> 1.
  const std::vector<double> l2 = {-10.0, 0.0, -10.0, 0.0};
  const std::vector<double> b2 = {0.0, 0.25, 0.0, 0.25};
  EXPECT_EQ(route(l2, b2, 1, make_shape(4, 1)).idx, (std::vector<int32_t>{1}));
  // The bias breaks a tie of unbiased scores.
  const std::vector<double> b3 = {0.0, 0.0, 0.125, 0.0};
  EXPECT_EQ(route(std::vector<double>(4, 0.0), b3, 1, make_shape(4, 2)).idx,
            (std::vector<int32_t>{2, 0}));
}

TEST(Router, GatesSumToRouteScale) {
  const int64_t N = 5;
  const auto logits = random_vector(N * 16, 1, -3, 3);
  const auto bias = random_vector(16, 2, -0.1, 0.1);
  const Routed r = route(logits, bias, N, make_shape(16, 4, 4, 2, 2.5));
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int j = 0; j < 4; ++j) s += r.gates[n * 4 + j];
    EXPECT_NEAR(s, 2.5, 1e-14);
  }
}

// Many tokens with quantised logits and biases (lots of ties) against the sort-based reference,
// including DeepSeek-V3's 256 experts in 8 groups, top-4 groups, top-8.
TEST(Router, SelectionMatchesReference) {
  const RouterShape shapes[] = {make_shape(16, 3, 4, 2), make_shape(16, 4), make_shape(12, 5, 3, 2),
                                make_shape(256, 8, 8, 4, 2.5)};
  uint64_t seed = 10;
  for (const auto& shape : shapes) {
    const int64_t N = 40, E = shape.n_experts;
    auto logits = random_vector(N * E, seed++, -2.0, 2.0);
    auto bias = random_vector(E, seed++, -0.5, 0.5);
    for (auto& x : logits) x = std::round(x * 2) / 2;  // values in {-2, -1.5, ..., 2}
    for (auto& b : bias) b = std::round(b * 4) / 4;
    const Routed r = route(logits, bias, N, shape);
    for (int64_t n = 0; n < N; ++n) {
      std::vector<double> biased(E);
      for (int64_t e = 0; e < E; ++e) biased[e] = r.scores[n * E + e] + bias[e];
      const auto ref = reference_select(biased.data(), shape);
      const std::vector<int32_t> got(r.idx.begin() + n * shape.top_k,
                                     r.idx.begin() + (n + 1) * shape.top_k);
      EXPECT_EQ(got, ref) << "token " << n << " E=" << E;
    }
  }
}

TEST(Router, BackwardMatchesFiniteDifferencesWithSelectionFixed) {
  const int64_t N = 3, E = 8;
  const RouterShape shape = make_shape(E, 3, 4, 2, 1.7);
  auto logits = random_vector(N * E, 20, -2.0, 2.0);
  const auto bias = random_vector(E, 21, -0.2, 0.2);
  const auto dgates = random_vector(N * 3, 22);
  const auto dextra = random_vector(N * E, 23);
  const auto idx0 = route(logits, bias, N, shape).idx;
  for (bool extra : {false, true}) {
    SCOPED_TRACE(extra ? "with dscores_extra" : "gates only");
    int64_t selection_changes = 0;
    auto loss = [&] {
      const Routed r = route(logits, bias, N, shape);
      if (r.idx != idx0) ++selection_changes;
      return testing::dot(dgates, r.gates) + (extra ? testing::dot(dextra, r.scores) : 0.0);
    };
    const auto g = testing::numeric_grad(logits, loss);
    ASSERT_EQ(selection_changes, 0) << "the perturbation changed the selection";
    const Routed r = route(logits, bias, N, shape);
    std::vector<double> dlogits(N * E, 5.0);
    router_backward(dlogits.data(), dgates.data(), extra ? dextra.data() : nullptr,
                    r.scores.data(), r.idx.data(), N, shape);
    EXPECT_LE(rel_error(dlogits, g), testing::kFdTolerance);
  }
}

TEST(Router, Fp32MatchesFp64) {
  const int64_t N = 6, E = 16;
  const RouterShape shape = make_shape(E, 4, 4, 2, 2.5);
  const auto logits = testing::float_exact(random_vector(N * E, 30, -3.0, 3.0));
  const auto bias = testing::float_exact(random_vector(E, 31, -0.1, 0.1));
  const auto dgates = testing::float_exact(random_vector(N * 4, 32));
  const Routed r = route(logits, bias, N, shape);
  const auto lf = testing::to_float(logits), bf = testing::to_float(bias);
  std::vector<float> sf(N * E), gf(N * 4);
  std::vector<int32_t> idxf(N * 4);
  router_forward(sf.data(), idxf.data(), gf.data(), lf.data(), bf.data(), N, shape);
  EXPECT_EQ(idxf, r.idx);
  EXPECT_LE(rel_error(sf, r.scores), testing::kF32Tolerance);
  EXPECT_LE(rel_error(gf, r.gates), testing::kF32Tolerance);
  std::vector<double> d(N * E);
  std::vector<float> df(N * E);
  const auto dgf = testing::to_float(dgates);
  router_backward<double>(d.data(), dgates.data(), nullptr, r.scores.data(), r.idx.data(), N, shape);
  router_backward<float>(df.data(), dgf.data(), nullptr, sf.data(), idxf.data(), N, shape);
  EXPECT_LE(rel_error(df, d), testing::kF32Tolerance);
}

TEST(Router, RejectsInconsistentShapes) {
  std::vector<double> logits(8), bias(8), scores(8), gates(2);
  std::vector<int32_t> idx(2);
  auto run = [&](const RouterShape& s) {
    router_forward(scores.data(), idx.data(), gates.data(), logits.data(), bias.data(), 1, s);
  };
  EXPECT_THROW(run(make_shape(8, 2, 3, 1)), std::invalid_argument);   // 8 % 3 != 0
  EXPECT_THROW(run(make_shape(8, 2, 8, 2)), std::invalid_argument);   // 1 expert per group
  EXPECT_THROW(run(make_shape(8, 2, 4, 5)), std::invalid_argument);   // topk_group > n_group
  EXPECT_THROW(run(make_shape(8, 5, 4, 2)), std::invalid_argument);   // k > 2 groups * 2
  EXPECT_THROW(run(make_shape(512, 2)), std::invalid_argument);       // beyond the fixed bound
}

// Naive balance loss: f_e and P_e per sequence, exactly as the V3 report writes them.
double naive_balance(const std::vector<double>& s, const std::vector<int32_t>& idx, int64_t B,
                     int64_t T, int64_t E, int64_t k, double alpha) {
  double total = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t e = 0; e < E; ++e) {
      int64_t count = 0;
      double P = 0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t n = b * T + t;
        for (int64_t j = 0; j < k; ++j) count += idx[n * k + j] == e;
        double z = 0;
        for (int64_t i = 0; i < E; ++i) z += s[n * E + i];
        P += s[n * E + e] / z / T;
      }
      total += alpha * (double(E) / double(k * T) * count) * P;
    }
  }
  return total;
}

TEST(BalanceLoss, ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  const int64_t B = 2, T = 4, E = 6, k = 2;
  const double alpha = 0.003, scale = 1.7;
  const auto logits = random_vector(B * T * E, 40, -2.0, 2.0);
  const std::vector<double> bias(E, 0.0);
  const Routed r = route(logits, bias, B * T, make_shape(E, k));
  auto scores = r.scores;
  EXPECT_NEAR(seq_balance_loss_forward(scores.data(), r.idx.data(), B, T, E, k, alpha),
              naive_balance(scores, r.idx, B, T, E, k, alpha), 1e-15);

  auto loss = [&] {
    return scale * seq_balance_loss_forward(scores.data(), r.idx.data(), B, T, E, k, alpha);
  };
  const auto g = testing::numeric_grad(scores, loss, {}, 1e-7);
  const auto d0 = random_vector(B * T * E, 41, -1e-3, 1e-3);
  auto d = d0;
  seq_balance_loss_backward(d.data(), scores.data(), r.idx.data(), B, T, E, k, alpha, scale);
  for (size_t i = 0; i < d.size(); ++i) d[i] -= d0[i];  // it accumulates
  EXPECT_LE(rel_error(d, g), testing::kFdTolerance);
}

// Equal scores and perfectly balanced routing give alpha per sequence.
TEST(BalanceLoss, BalancedRoutingGivesAlpha) {
  const int64_t B = 3, T = 4, E = 4, k = 2;
  std::vector<double> s(B * T * E, 0.3);
  std::vector<int32_t> idx(B * T * k);
  for (int64_t n = 0; n < B * T; ++n) {
    idx[n * k] = static_cast<int32_t>((2 * n) % E);
    idx[n * k + 1] = static_cast<int32_t>((2 * n + 1) % E);
  }
  EXPECT_NEAR(seq_balance_loss_forward(s.data(), idx.data(), B, T, E, k, 0.01), 3 * 0.01, 1e-15);
}

TEST(Router, CountLoadAccumulates) {
  std::vector<int64_t> counts = {1, 0, 0};
  const std::vector<int32_t> idx = {0, 2, 2, 1, 2, 0};
  router_count_load(counts.data(), idx.data(), 3, 2, 3);
  EXPECT_EQ(counts, (std::vector<int64_t>{3, 1, 3}));
  const std::vector<int32_t> bad = {0, 3};
  EXPECT_THROW(router_count_load(counts.data(), bad.data(), 1, 2, 3), std::out_of_range);
}

}  // namespace
}  // namespace tessera::kernels
