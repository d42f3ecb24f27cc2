// Every Comm collective on the fake communicator, 1..8 ranks, in place and out of place, with
// exactly predictable values (the same checks run over MPI in comm_mpitest.cc).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/fake_comm.h"
#include "tests/parallel/comm_test_checks.h"

namespace tessera::parallel {
namespace {

using testing::check_all_gather;
using testing::check_all_reduce;
using testing::check_all_to_all_v;
using testing::check_broadcast;
using testing::check_reduce_scatter;
using testing::check_send_recv_ring;

constexpr int kMaxRanks = 8;

// Runs check(comm) -> "" on every rank of worlds of 1..kMaxRanks and reports every failure.
template <typename Check>
void on_all_world_sizes(Check check) {
  for (int p = 1; p <= kMaxRanks; ++p) {
    std::mutex mu;
    std::string failures;
    run_fake_ranks(p, [&](Comm& c) {
      std::string f = check(c);
      if (!f.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        failures += f + "\n";
      }
    });
    EXPECT_EQ(failures, "") << "world of " << p;
  }
}

template <typename T>
class CollectivesTest : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, double, int32_t, int64_t, uint16_t, uint32_t>;
TYPED_TEST_SUITE(CollectivesTest, ElementTypes);

TYPED_TEST(CollectivesTest, AllReduceEveryOp) {
  on_all_world_sizes([](Comm& c) {
    std::string f;
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax}) {
      for (bool in_place : {false, true}) {
        for (int64_t n : {0, 1, 37}) f += check_all_reduce<TypeParam>(c, in_place, op, n);
      }
    }
    return f;
  });
}

TYPED_TEST(CollectivesTest, ReduceScatter) {
  on_all_world_sizes([](Comm& c) {
    std::string f;
    for (bool in_place : {false, true}) {
      for (int64_t n : {0, 1, 13}) f += check_reduce_scatter<TypeParam>(c, in_place, n);
      for (ReduceOp op : {ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax}) {
        f += check_reduce_scatter<TypeParam>(c, in_place, 13, op);
      }
    }
    return f;
  });
}

TYPED_TEST(CollectivesTest, AllGather) {
  on_all_world_sizes([](Comm& c) {
    std::string f;
    for (bool in_place : {false, true}) {
      for (int64_t n : {0, 1, 21}) f += check_all_gather<TypeParam>(c, in_place, n);
    }
    return f;
  });
}

TYPED_TEST(CollectivesTest, AllToAllVUnevenCountsWithZeros) {
  on_all_world_sizes([](Comm& c) {
    std::string f;
    for (bool in_place : {false, true}) {
      for (bool strided : {false, true}) f += check_all_to_all_v<TypeParam>(c, in_place, strided);
    }
    return f;
  });
}

TYPED_TEST(CollectivesTest, BroadcastFromEveryRoot) {
  on_all_world_sizes([](Comm& c) {
    std::string f;
    for (int root = 0; root < c.size(); ++root) f += check_broadcast<TypeParam>(c, root, 19);
    return f;
  });
}

TYPED_TEST(CollectivesTest, SendRecvRing) {
  on_all_world_sizes([](Comm& c) { return check_send_recv_ring<TypeParam>(c, 11); });
}

TEST(CollectivesTest, P2POrderAndSplit) {
  on_all_world_sizes([](Comm& c) { return testing::check_p2p_order(c) + testing::check_split(c); });
}

TEST(CollectivesTest, BarrierWaitsForEveryRank) {
  for (int p = 1; p <= kMaxRanks; ++p) {
    std::atomic<int> arrived{0};
    std::atomic<int> early{0};
    run_fake_ranks(p, [&](Comm& c) {
      // Stagger arrivals so a barrier that returned early would be seen.
      std::this_thread::sleep_for(std::chrono::milliseconds(2 * c.rank()));
      arrived.fetch_add(1);
      c.barrier().wait();
      if (arrived.load() != c.size()) early.fetch_add(1);
    });
    EXPECT_EQ(early.load(), 0) << "world of " << p;
  }
}

}  // namespace
}  // namespace tessera::parallel
