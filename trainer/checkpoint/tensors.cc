#include "trainer/checkpoint/tensors.h"

#include <cstring>

#include "trainer/model.h"

namespace tessera::trainer {

std::vector<CheckpointTensor> checkpoint_tensors(const ModelConfig& config) {
  std::vector<CheckpointTensor> out;
  for (const ParamDesc& d : Model::WholeModelParams(config)) {
    out.push_back({d.name, d.global_shape()});
    if (d.trainable) {
      out.push_back({kExpAvgPrefix + d.name, d.global_shape()});
      out.push_back({kExpAvgSqPrefix + d.name, d.global_shape()});
    }
  }
  return out;
}

uint64_t slice_checksum(int64_t begin, const float* data, int64_t n) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i, sizeof(bits));
    // splitmix64 finaliser of (index, bits): every element counts, in any order of summation.
    uint64_t z = (static_cast<uint64_t>(begin + i) << 32 ^ bits) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    sum += z ^ (z >> 31);
  }
  return sum;
}

}  // namespace tessera::trainer
