// ZeRO-1 data movement over one contiguous region of a flat buffer (DESIGN.md "Numbers flow" 4):
// the region splits into group.size() equal shards, rank r owning shard r. Gradients are
// reduce-scattered so each rank ends with the group's sum of its own shard; after the rank updated
// its shard, the values are all-gathered back into every rank's full region. Both run in place
// (the in-place forms of Comm) and are no-ops for a group of one.
#pragma once

#include <cstdint>
#include <span>

#include "parallel/comm.h"

namespace tessera::parallel {

// [begin, end) of rank's shard, in elements from the start of the region.
struct ShardBounds {
  int64_t begin = 0, end = 0;
};

// REQUIRES: region_length % group_size == 0 (pad the region; throws std::invalid_argument).
ShardBounds zero_shard(int64_t region_length, int group_size, int rank);

// Afterwards the caller's shard of `region` holds the sum over the group; the rest of the region
// is unspecified until all_gather_shards.
Work reduce_scatter_shards(Comm& group, std::span<float> region);
// Every rank's shard is copied into every rank's region.
Work all_gather_shards(Comm& group, std::span<float> region);

}  // namespace tessera::parallel
