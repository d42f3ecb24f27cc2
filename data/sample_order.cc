#include "data/sample_order.h"

#include <bit>

#include "data/random.h"

namespace tessera::data {

EpochPermutation::EpochPermutation(uint64_t n, uint64_t seed, uint64_t epoch) : n_(n) {
  if (n_ <= 1) return;
  const int bits = std::bit_width(n_ - 1);  // bits needed for the largest index
  half_bits_ = (bits + 1) / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
  const uint64_t base = mix64(mix64(seed) ^ mix64(epoch + 0x5851F42D4C957F2Dull));
  for (int r = 0; r < kRounds; ++r) keys_[r] = mix64(base + static_cast<uint64_t>(r));
}

uint64_t EpochPermutation::feistel(uint64_t x) const {
  uint64_t left = x >> half_bits_;
  uint64_t right = x & half_mask_;
  for (int r = 0; r < kRounds; ++r) {
    const uint64_t next = left ^ (mix64(right ^ keys_[r]) & half_mask_);
    left = right;
    right = next;
  }
  return left << half_bits_ | right;
}

uint64_t EpochPermutation::operator()(uint64_t i) const {
  if (n_ <= 1) return i;
  // The Feistel network permutes [0, 2^(2*half_bits)); walking the cycle from i until it
  // re-enters [0, n) restricts it to a permutation of [0, n).
  uint64_t x = feistel(i);
  while (x >= n_) x = feistel(x);
  return x;
}

}  // namespace tessera::data
