// A random order-K Markov chain over a vocabulary of V tokens whose entropy rate is known exactly:
// the source of synthetic datasets, so a model's loss can be judged against the floor it cannot beat.
//
// States are the last K tokens, s = x_{t-K+1} * V^(K-1) + ... + x_t (V^K states); after token y
// the state becomes (s * V + y) mod V^K.
//
// Construction (seeded, deterministic): every state s gets a support of m = `support` distinct next
// tokens and probabilities over it:
//   - the support always holds d(s), the token that follows s in a de Bruijn sequence of order K
//     over V symbols: those transitions alone form one cycle through all V^K states, so the chain
//     is irreducible; the all-zero state's support also holds 0 (a self-loop), so it is aperiodic.
//     Irreducible + aperiodic + finite = ergodic: a unique stationary distribution that every
//     start converges to.
//   - the other tokens are drawn uniformly without replacement from the rest of the vocabulary;
//   - probabilities are (1 - smoothing) * w + smoothing / m with w ~ Dirichlet(concentration, ..., m
//     times); the smoothing floor keeps every support token at least smoothing / m likely, so
//     the chain mixes well.
// Each state's next-token entropy is at most log m, so with m << V the entropy rate is far below
// log V: learnable (a model must find the m likely successors of each context and their odds),
// but not trivial (the odds are random, and contexts of K tokens must be used).
//
// The entropy rate is H = sum_s pi_s H(P(.|s)) in nats, with pi the stationary distribution found
// by power iteration to an L1 change below 1e-13 (exact to double precision).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "data/random.h"

namespace tessera::data {

struct MarkovChainSpec {
  int64_t vocab = 0;           // V >= 2
  int64_t order = 1;           // K >= 1, V^K <= kMaxStates
  int64_t support = 4;         // m in [2, V]
  double concentration = 1.0;  // Dirichlet parameter > 0 (small: peaked, large: near uniform)
  double smoothing = 0.1;      // in [0, 1)
  uint64_t seed = 0;
};

class MarkovChain {
 public:
  static constexpr uint64_t kMaxStates = uint64_t{1} << 22;

  // Throws DataError (naming the parameter) for a spec out of range.
  explicit MarkovChain(const MarkovChainSpec& spec);
  // The constructor's checks alone (cheap); returns V^K.
  static uint64_t validate(const MarkovChainSpec& spec);

  const MarkovChainSpec& spec() const { return spec_; }
  uint64_t n_states() const { return n_states_; }
  uint64_t next_state(uint64_t state, uint32_t token) const {
    return (state * static_cast<uint64_t>(spec_.vocab) + token) % n_states_;
  }
  // The support of state s and the probabilities over it.
  std::span<const uint32_t> next_tokens(uint64_t s) const;
  std::span<const double> next_probs(uint64_t s) const;

  const std::vector<double>& stationary() const { return stationary_; }
  double entropy_rate_nats() const { return entropy_rate_; }

  // A state drawn from the stationary distribution.
  uint64_t sample_state(Rng& rng) const;
  // Appends n tokens drawn from the chain, starting in and updating *state.
  void sample(uint64_t n, Rng& rng, uint64_t* state, std::vector<uint32_t>& out) const;

 private:
  void build();
  void solve_stationary();

  MarkovChainSpec spec_;
  uint64_t n_states_ = 0;
  size_t m_ = 0;
  std::vector<uint32_t> tokens_;    // [n_states, m]
  std::vector<double> probs_;       // [n_states, m]
  std::vector<double> cumulative_;  // [n_states, m], last = 1
  std::vector<double> stationary_;  // [n_states]
  std::vector<double> stationary_cumulative_;
  double entropy_rate_ = 0.0;
};

// The de Bruijn sequence B(V, K) (Fredricksen-Kessler-Maiorana, lexicographically least): every
// K-token string over V symbols appears exactly once as a cyclic window. Length V^K.
std::vector<uint32_t> de_bruijn_sequence(uint32_t vocab, int order);

}  // namespace tessera::data
