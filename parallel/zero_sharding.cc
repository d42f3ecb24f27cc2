#include "parallel/zero_sharding.h"

#include <stdexcept>
#include <string>

namespace tessera::parallel {

ShardBounds zero_shard(int64_t region_length, int group_size, int rank) {
  if (group_size < 1 || region_length % group_size != 0) {
    throw std::invalid_argument("ZeRO region of " + std::to_string(region_length) +
                                " elements does not split into " + std::to_string(group_size) +
                                " equal shards (pad it to a multiple of the group size)");
  }
  const int64_t n = region_length / group_size;
  return {rank * n, (rank + 1) * n};
}

Work reduce_scatter_shards(Comm& group, std::span<float> region) {
  if (group.size() == 1) return Work();
  const ShardBounds s = zero_shard(static_cast<int64_t>(region.size()), group.size(), group.rank());
  return group.reduce_scatter<float>(region, region.subspan(s.begin, s.end - s.begin));
}

Work all_gather_shards(Comm& group, std::span<float> region) {
  if (group.size() == 1) return Work();
  const ShardBounds s = zero_shard(static_cast<int64_t>(region.size()), group.size(), group.rank());
  return group.all_gather<float>(region.subspan(s.begin, s.end - s.begin), region);
}

}  // namespace tessera::parallel
