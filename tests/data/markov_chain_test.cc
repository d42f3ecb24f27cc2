#include "data/markov_chain.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "data/data_error.h"

namespace tessera::data {
namespace {

TEST(DeBruijn, EveryWindowOccursOnce) {
  for (const auto& [vocab, order] : std::vector<std::pair<uint32_t, int>>{{2, 1}, {2, 5}, {3, 3}, {5, 2}, {16, 2}}) {
    const std::vector<uint32_t> seq = de_bruijn_sequence(vocab, order);
    const uint64_t n = static_cast<uint64_t>(std::pow(vocab, order));
    ASSERT_EQ(seq.size(), n);
    std::set<uint64_t> windows;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t w = 0;
      for (int j = 0; j < order; ++j) w = w * vocab + seq[(i + static_cast<uint64_t>(j)) % n];
      windows.insert(w);
    }
    EXPECT_EQ(windows.size(), n) << vocab << "^" << order;
  }
}

MarkovChainSpec spec(int64_t vocab, int64_t order, int64_t support, uint64_t seed) {
  MarkovChainSpec s;
  s.vocab = vocab;
  s.order = order;
  s.support = support;
  s.seed = seed;
  return s;
}

TEST(MarkovChain, RowsAreDistributionsWithTheirDeBruijnSuccessor) {
  const MarkovChain chain(spec(7, 2, 3, 1));
  ASSERT_EQ(chain.n_states(), 49u);
  for (uint64_t s = 0; s < chain.n_states(); ++s) {
    double total = 0;
    std::set<uint32_t> distinct;
    for (const double p : chain.next_probs(s)) {
      EXPECT_GE(p, 0.1 / 3 - 1e-15);  // the smoothing floor
      total += p;
    }
    for (const uint32_t t : chain.next_tokens(s)) {
      EXPECT_LT(t, 7u);
      distinct.insert(t);
    }
    EXPECT_EQ(distinct.size(), 3u);
    EXPECT_NEAR(total, 1.0, 1e-12);
  }
  // The all-zero state can return to itself (aperiodicity).
  bool self_loop = false;
  for (const uint32_t t : chain.next_tokens(0)) self_loop |= t == 0;
  EXPECT_TRUE(self_loop);
}

TEST(MarkovChain, StationaryDistributionIsInvariantAndPositive) {
  const MarkovChain chain(spec(6, 2, 2, 4));
  const std::vector<double>& pi = chain.stationary();
  std::vector<double> next(pi.size(), 0.0);
  for (uint64_t s = 0; s < chain.n_states(); ++s) {
    EXPECT_GT(pi[s], 0.0) << "state " << s << " unreachable: chain not irreducible";
    for (size_t k = 0; k < 2; ++k) {
      next[chain.next_state(s, chain.next_tokens(s)[k])] += pi[s] * chain.next_probs(s)[k];
    }
  }
  double residual = 0;
  for (size_t s = 0; s < pi.size(); ++s) residual += std::fabs(next[s] - pi[s]);
  EXPECT_LT(residual, 1e-12);
}

TEST(MarkovChain, EntropyRateIsWellBelowUniform) {
  const MarkovChain chain(spec(64, 1, 4, 9));
  EXPECT_GT(chain.entropy_rate_nats(), 0.3);
  EXPECT_LT(chain.entropy_rate_nats(), std::log(4.0) + 1e-12);
  EXPECT_LT(chain.entropy_rate_nats(), 0.5 * std::log(64.0));
}

TEST(MarkovChain, SameSeedSameChain) {
  const MarkovChain a(spec(10, 2, 3, 5)), b(spec(10, 2, 3, 5)), c(spec(10, 2, 3, 6));
  EXPECT_EQ(a.entropy_rate_nats(), b.entropy_rate_nats());
  EXPECT_NE(a.entropy_rate_nats(), c.entropy_rate_nats());
  Rng ra(1), rb(1);
  uint64_t sa = 0, sb = 0;
  std::vector<uint32_t> xa, xb;
  a.sample(1000, ra, &sa, xa);
  b.sample(1000, rb, &sb, xb);
  EXPECT_EQ(xa, xb);
}

TEST(MarkovChain, RejectsBadSpecs) {
  EXPECT_THROW(MarkovChain(spec(1, 1, 1, 0)), DataError);
  EXPECT_THROW(MarkovChain(spec(64, 0, 4, 0)), DataError);
  EXPECT_THROW(MarkovChain(spec(64, 1, 1, 0)), DataError);   // support 1: deterministic, periodic
  EXPECT_THROW(MarkovChain(spec(64, 1, 65, 0)), DataError);
  EXPECT_THROW(MarkovChain(spec(1024, 4, 4, 0)), DataError); // 2^40 states
}

}  // namespace
}  // namespace tessera::data
