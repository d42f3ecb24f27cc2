// The order in which an epoch visits samples: a pseudo-random permutation of [0, n) that depends
// only on (seed, epoch). It is a balanced Feistel network on the smallest even number of bits
// covering n, with round keys from SplitMix64 and cycle walking to stay inside [0, n) (fewer than 4
// steps expected). It needs O(1) memory and O(1) time per index, and gives the same order on every
// platform, which is what lets a resumed or re-laid-out run read exactly the same samples.
#pragma once

#include <cstdint>

namespace tessera::data {

class EpochPermutation {
 public:
  static constexpr int kRounds = 6;

  EpochPermutation(uint64_t n, uint64_t seed, uint64_t epoch);

  uint64_t size() const { return n_; }
  // The sample visited at position i of the epoch. REQUIRES: i < size().
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t feistel(uint64_t x) const;

  uint64_t n_;
  int half_bits_ = 0;
  uint64_t half_mask_ = 0;
  uint64_t keys_[kRounds] = {};
};

}  // namespace tessera::data
