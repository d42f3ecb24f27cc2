#include "parallel/zero_sharding.h"

#include <gtest/gtest.h>

#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::parallel {
namespace {

TEST(ZeroSharding, ShardsPartitionTheRegionAndRejectUnpaddedLengths) {
  EXPECT_EQ(zero_shard(12, 3, 0).begin, 0);
  EXPECT_EQ(zero_shard(12, 3, 2).begin, 8);
  EXPECT_EQ(zero_shard(12, 3, 2).end, 12);
  EXPECT_THROW(zero_shard(10, 3, 0), std::invalid_argument);
}

// Rank r's region holds r*1000 + i: after reduce-scatter its shard holds the column sums, after
// the all-gather of those sums (scaled by the rank to mark whose shard is whose) every rank's
// region is the concatenation of all shards.
TEST(ZeroSharding, ReduceScatterThenAllGatherInPlace) {
  for (int n : {1, 2, 3, 4}) {
    const int64_t len = 6 * n;
    run_fake_ranks(n, [&](Comm& comm) {
      const int r = comm.rank();
      std::vector<float> region(len);
      for (int64_t i = 0; i < len; ++i) region[i] = static_cast<float>(r * 1000 + i);
      reduce_scatter_shards(comm, region).wait();
      const ShardBounds s = zero_shard(len, n, r);
      for (int64_t i = s.begin; i < s.end; ++i) {
        const float expected = static_cast<float>(1000 * n * (n - 1) / 2 + n * i);
        ASSERT_EQ(region[i], expected) << "n=" << n << " rank " << r << " element " << i;
        region[i] = static_cast<float>(i * 10 + 1);  // "updated" shard
      }
      all_gather_shards(comm, region).wait();
      for (int64_t i = 0; i < len; ++i) ASSERT_EQ(region[i], static_cast<float>(i * 10 + 1));
    });
  }
}

}  // namespace
}  // namespace tessera::parallel
