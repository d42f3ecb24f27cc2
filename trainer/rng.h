// Deterministic random numbers that are identical on every platform and compiler:
// std::normal_distribution and friends are implementation-defined, so we draw our own.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string_view>

namespace tessera::trainer {

// 64-bit FNV-1a, to derive per-name streams from a seed.
inline uint64_t hash_name(uint64_t seed, std::string_view name) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return (engine_() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal by Box-Muller (both values used).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0;
    while (u1 <= 0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2 * M_PI * u2);
  }
  uint64_t next_u64() { return engine_(); }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace tessera::trainer
