#include "data/markov_chain.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "data/data_error.h"

namespace tessera::data {

namespace {

void fkm(int t, int p, int n, uint32_t k, std::vector<uint32_t>& a, std::vector<uint32_t>& out) {
  if (t > n) {
    if (n % p == 0) out.insert(out.end(), a.begin() + 1, a.begin() + 1 + p);
    return;
  }
  a[t] = a[t - p];
  fkm(t + 1, p, n, k, a, out);
  for (uint32_t j = a[t - p] + 1; j < k; ++j) {
    a[t] = j;
    fkm(t + 1, t, n, k, a, out);
  }
}

[[noreturn]] void bad_spec(const std::string& what) { throw DataError("synthetic Markov chain: " + what); }

constexpr double kStationaryTolerance = 1e-13;
constexpr int kMaxPowerIterations = 20000;

}  // namespace

std::vector<uint32_t> de_bruijn_sequence(uint32_t vocab, int order) {
  std::vector<uint32_t> a(static_cast<size_t>(order) + 1, 0);
  std::vector<uint32_t> out;
  fkm(1, 1, order, vocab, a, out);
  return out;
}

uint64_t MarkovChain::validate(const MarkovChainSpec& spec) {
  if (spec.vocab < 2 || spec.vocab > (int64_t{1} << 31)) {
    bad_spec("--vocab must be in [2, 2^31], got " + std::to_string(spec.vocab));
  }
  if (spec.order < 1) bad_spec("--order must be >= 1, got " + std::to_string(spec.order));
  uint64_t states = 1;
  for (int64_t k = 0; k < spec.order; ++k) {
    if (states > kMaxStates / static_cast<uint64_t>(spec.vocab)) {
      bad_spec("vocab^order = " + std::to_string(spec.vocab) + "^" + std::to_string(spec.order) +
               " states is more than the " + std::to_string(kMaxStates) + " supported");
    }
    states *= static_cast<uint64_t>(spec.vocab);
  }
  if (spec.support < 2 || spec.support > spec.vocab) {
    bad_spec("--support must be in [2, vocab], got " + std::to_string(spec.support));
  }
  if (!(spec.concentration > 0.0) || !std::isfinite(spec.concentration)) {
    bad_spec("--concentration must be > 0");
  }
  if (!(spec.smoothing >= 0.0 && spec.smoothing < 1.0)) bad_spec("--smoothing must be in [0, 1)");
  return states;
}

MarkovChain::MarkovChain(const MarkovChainSpec& spec) : spec_(spec) {
  n_states_ = validate(spec_);
  m_ = static_cast<size_t>(spec_.support);
  build();
  solve_stationary();
}

std::span<const uint32_t> MarkovChain::next_tokens(uint64_t s) const {
  return {tokens_.data() + s * m_, m_};
}

std::span<const double> MarkovChain::next_probs(uint64_t s) const {
  return {probs_.data() + s * m_, m_};
}

void MarkovChain::build() {
  const uint32_t vocab = static_cast<uint32_t>(spec_.vocab);
  // successor[s]: the token after state s on the de Bruijn cycle through every state.
  std::vector<uint32_t> successor(n_states_);
  {
    const std::vector<uint32_t> cycle = de_bruijn_sequence(vocab, static_cast<int>(spec_.order));
    const uint64_t n = cycle.size();  // == n_states_
    uint64_t state = 0;
    for (int64_t j = 0; j < spec_.order; ++j) state = state * vocab + cycle[static_cast<uint64_t>(j)];
    for (uint64_t i = 0; i < n; ++i) {
      const uint32_t next = cycle[(i + static_cast<uint64_t>(spec_.order)) % n];
      successor[state] = next;
      state = (state * vocab + next) % n_states_;
    }
  }

  Rng rng(mix64(spec_.seed) ^ 0x6A09E667F3BCC909ull);
  tokens_.resize(n_states_ * m_);
  probs_.resize(n_states_ * m_);
  cumulative_.resize(n_states_ * m_);
  std::vector<double> weights(m_);
  for (uint64_t s = 0; s < n_states_; ++s) {
    uint32_t* support = tokens_.data() + s * m_;
    size_t filled = 0;
    support[filled++] = successor[s];
    if (s == 0 && successor[s] != 0) support[filled++] = 0;  // self-loop: aperiodic
    while (filled < m_) {
      const uint32_t candidate = static_cast<uint32_t>(rng.below(vocab));
      if (std::find(support, support + filled, candidate) == support + filled) support[filled++] = candidate;
    }
    std::sort(support, support + m_);
    double total = 0.0;
    for (double& w : weights) total += (w = rng.gamma(spec_.concentration));
    double* p = probs_.data() + s * m_;
    double* c = cumulative_.data() + s * m_;
    double running = 0.0;
    for (size_t k = 0; k < m_; ++k) {
      const double w = total > 0.0 && std::isfinite(total) ? weights[k] / total : 1.0 / static_cast<double>(m_);
      p[k] = (1.0 - spec_.smoothing) * w + spec_.smoothing / static_cast<double>(m_);
      running += p[k];
      c[k] = running;
    }
    c[m_ - 1] = 1.0;  // guard the last bucket against rounding
  }
}

void MarkovChain::solve_stationary() {
  std::vector<double> pi(n_states_, 1.0 / static_cast<double>(n_states_));
  std::vector<double> next(n_states_);
  bool converged = false;
  for (int iteration = 0; iteration < kMaxPowerIterations && !converged; ++iteration) {
    std::fill(next.begin(), next.end(), 0.0);
    for (uint64_t s = 0; s < n_states_; ++s) {
      const uint32_t* t = tokens_.data() + s * m_;
      const double* p = probs_.data() + s * m_;
      for (size_t k = 0; k < m_; ++k) next[next_state(s, t[k])] += pi[s] * p[k];
    }
    long double total = 0.0L;
    for (const double x : next) total += x;
    double change = 0.0;
    for (uint64_t s = 0; s < n_states_; ++s) {
      next[s] = static_cast<double>(next[s] / total);
      change += std::fabs(next[s] - pi[s]);
    }
    pi.swap(next);
    converged = change < kStationaryTolerance;
  }
  if (!converged) {
    bad_spec("the stationary distribution did not converge in " + std::to_string(kMaxPowerIterations) +
             " iterations (raise --smoothing or --concentration)");
  }
  stationary_ = std::move(pi);

  long double rate = 0.0L;
  stationary_cumulative_.resize(n_states_);
  long double running = 0.0L;
  for (uint64_t s = 0; s < n_states_; ++s) {
    const double* p = probs_.data() + s * m_;
    long double h = 0.0L;
    for (size_t k = 0; k < m_; ++k) {
      if (p[k] > 0.0) h -= static_cast<long double>(p[k]) * std::log(static_cast<long double>(p[k]));
    }
    rate += static_cast<long double>(stationary_[s]) * h;
    running += stationary_[s];
    stationary_cumulative_[s] = static_cast<double>(running);
  }
  stationary_cumulative_.back() = 1.0;
  entropy_rate_ = static_cast<double>(rate);
}

uint64_t MarkovChain::sample_state(Rng& rng) const {
  const double u = rng.uniform();
  const auto it = std::upper_bound(stationary_cumulative_.begin(), stationary_cumulative_.end(), u);
  return std::min<uint64_t>(static_cast<uint64_t>(it - stationary_cumulative_.begin()), n_states_ - 1);
}

void MarkovChain::sample(uint64_t n, Rng& rng, uint64_t* state, std::vector<uint32_t>& out) const {
  uint64_t s = *state;
  out.reserve(out.size() + n);
  for (uint64_t i = 0; i < n; ++i) {
    const double u = rng.uniform();
    const double* c = cumulative_.data() + s * m_;
    size_t k = 0;
    while (k + 1 < m_ && u >= c[k]) ++k;
    const uint32_t y = tokens_[s * m_ + k];
    out.push_back(y);
    s = next_state(s, y);
  }
  *state = s;
}

}  // namespace tessera::data
