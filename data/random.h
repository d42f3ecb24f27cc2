// Deterministic random numbers for data preparation and sample order. Everything here is written
// out by hand (no std::*_distribution, whose results are implementation-defined), so a seed gives
// the same dataset and the same sample order on every platform and standard library.
#pragma once

#include <cstdint>

namespace tessera::data {

// SplitMix64 finaliser: a bijective 64-bit mixer (good avalanche), used as a stateless hash.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// xoshiro256** seeded through SplitMix64. Not thread-safe; one generator per thread.
class Rng {
 public:
  explicit Rng(uint64_t seed);

  uint64_t next();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  // Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject). REQUIRES: n > 0.
  uint64_t below(uint64_t n);
  // Standard normal (Marsaglia polar method).
  double normal();
  // Gamma(shape, 1) (Marsaglia-Tsang; shape < 1 through the U^(1/shape) boost). REQUIRES: shape > 0.
  double gamma(double shape);

 private:
  uint64_t s_[4];
};

}  // namespace tessera::data
