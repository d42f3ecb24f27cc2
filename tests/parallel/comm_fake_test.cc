// FakeComm semantics: non-blocking posts, completion rules, cross-rank error detection,
// watchdog timeouts, failure propagation in run_fake_ranks, sub-groups.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::parallel {
namespace {

// EXPECT_THAT(text, HasSubstr(part)) without gmock.
#define EXPECT_CONTAINS(text, part)                      \
  do {                                                   \
    const std::string text_ = (text);                    \
    EXPECT_NE(text_.find(part), std::string::npos)       \
        << "'" << text_ << "' lacks '" << (part) << "'"; \
  } while (0)

// The message of the exception wait() throws, or "" if it does not throw.
std::string wait_error(const Work& w) {
  try {
    w.wait();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(FakeCommTest, CollectiveCompletesWhenTheLastRankPosts) {
  auto comms = FakeComm::create_world(3);
  std::vector<std::vector<float>> data = {{1, 2}, {10, 20}, {100, 200}};
  Work w0 = comms[0]->all_reduce(std::span<float>(data[0]));
  Work w1 = comms[1]->all_reduce(std::span<float>(data[1]));
  EXPECT_FALSE(w0.test());
  EXPECT_FALSE(w1.test());
  EXPECT_EQ(data[0][0], 1.0f);  // nothing moved yet
  Work w2 = comms[2]->all_reduce(std::span<float>(data[2]));
  EXPECT_TRUE(w0.test());
  EXPECT_TRUE(w1.test());
  EXPECT_TRUE(w2.test());
  for (auto& d : data) EXPECT_EQ(d, (std::vector<float>{111, 222}));
}

TEST(FakeCommTest, SendCompletesOnlyWhenMatched) {
  auto comms = FakeComm::create_world(2);
  std::vector<int64_t> out = {7, 8, 9}, in(3, 0);
  Work s = comms[0]->send<int64_t>(out, 1, 4);
  EXPECT_FALSE(s.test());
  Work other_tag = comms[1]->recv(std::span<int64_t>(in), 0, 5);
  EXPECT_FALSE(s.test());
  EXPECT_FALSE(other_tag.test());
  Work r = comms[1]->recv(std::span<int64_t>(in), 0, 4);
  EXPECT_TRUE(s.test());
  EXPECT_TRUE(r.test());
  EXPECT_EQ(in, out);
  std::vector<int64_t> late = {1, 2, 3};
  comms[0]->send<int64_t>(late, 1, 5).wait();  // matches the tag-5 recv posted earlier
  EXPECT_TRUE(other_tag.test());
  EXPECT_EQ(in, late);
}

TEST(FakeCommTest, DifferentCollectivesAtOneSequenceNumberFailEveryRank) {
  auto comms = FakeComm::create_world(2);
  std::vector<float> a(4, 1), b(4, 1), gathered(8);
  Work w0 = comms[0]->all_reduce(std::span<float>(a));
  Work w1 = comms[1]->all_gather<float>(b, std::span<float>(gathered));
  const std::string e0 = wait_error(w0), e1 = wait_error(w1);
  EXPECT_CONTAINS(e0, "collective mismatch at #0");
  EXPECT_CONTAINS(e0, "all_reduce(f32 x 4, sum)");
  EXPECT_CONTAINS(e0, "all_gather(f32 x 4 per rank)");
  EXPECT_EQ(e0, e1);
}

TEST(FakeCommTest, DifferentCountsOrOpsAreMismatches) {
  auto comms = FakeComm::create_world(2);
  std::vector<double> a(4, 1), b(5, 1);
  Work w0 = comms[0]->all_reduce(std::span<double>(a));
  Work w1 = comms[1]->all_reduce(std::span<double>(b));
  EXPECT_CONTAINS(wait_error(w0), "f64 x 5");
  EXPECT_CONTAINS(wait_error(w1), "f64 x 4");
  std::vector<double> c(4, 1), d(4, 1);
  Work w2 = comms[0]->all_reduce(std::span<double>(c), {ReduceOp::kMax});
  Work w3 = comms[1]->all_reduce(std::span<double>(d), {ReduceOp::kSum});
  EXPECT_CONTAINS(wait_error(w2), "collective mismatch at #1");
  EXPECT_FALSE(wait_error(w3).empty());
}

TEST(FakeCommTest, AllToAllVCountMismatchNamesBothRanks) {
  auto comms = FakeComm::create_world(2);
  std::vector<int32_t> in0 = {1, 2, 3}, out0(3), in1 = {4, 5}, out1(3);
  AllToAllVOptions o0{{1, 2}, {1, 1}, {}, {}};  // rank 0 sends 2 elements to rank 1
  AllToAllVOptions o1{{1, 1}, {1, 1}, {}, {}};  // rank 1 expects 1 element from rank 0
  Work w0 = comms[0]->all_to_all_v<int32_t>(in0, std::span<int32_t>(out0), o0);
  Work w1 = comms[1]->all_to_all_v<int32_t>(in1, std::span<int32_t>(out1), o1);
  EXPECT_CONTAINS(wait_error(w0), "rank 0 sends 2 elements to rank 1, which expects 1");
  EXPECT_CONTAINS(wait_error(w1), "rank 0 sends 2 elements to rank 1, which expects 1");
}

TEST(FakeCommTest, SendRecvCountMismatchFailsBothSides) {
  auto comms = FakeComm::create_world(2);
  std::vector<float> out(4, 1), in(3);
  Work s = comms[0]->send<float>(out, 1);
  Work r = comms[1]->recv(std::span<float>(in), 0);
  EXPECT_CONTAINS(wait_error(s), "send/recv mismatch");
  EXPECT_CONTAINS(wait_error(r), "f32 x 3 from rank 0");
}

TEST(FakeCommTest, TimeoutNamesTheOperationAndItsSequenceNumber) {
  auto comms = FakeComm::create_world(2, {.timeout_s = 0.2});
  comms[0]->barrier();
  comms[1]->barrier().wait();
  std::vector<float> x(3);
  const auto t0 = std::chrono::steady_clock::now();
  Work w = comms[0]->all_reduce(std::span<float>(x));  // rank 1 never joins
  const std::string e = wait_error(w);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_CONTAINS(e,
                  "communication timeout: all_reduce #1 [f32 x 3, sum] on comm 'world' "
                  "(rank 0 of 2)");
  EXPECT_GE(seconds, 0.19);
  EXPECT_LT(seconds, 5.0);
  // The timeout aborted the whole fake world: nothing can be posted any more.
  std::vector<float> y(3);
  EXPECT_CONTAINS(wait_error(comms[1]->all_reduce(std::span<float>(y))), "aborted");
}

TEST(FakeCommTest, TestPastTheDeadlineReportsTheTimeout) {
  auto comms = FakeComm::create_world(2, {.timeout_s = 0.05});
  std::vector<int32_t> x(1);
  Work w = comms[0]->recv(std::span<int32_t>(x), 1, 9);
  EXPECT_FALSE(w.test());
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_TRUE(w.test());
  EXPECT_CONTAINS(wait_error(w), "recv #0 [i32 x 1 from rank 1, tag 9]");
}

TEST(FakeCommTest, RunFakeRanksRethrowsTheFirstFailureAndUnblocksPeers) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    run_fake_ranks(4, [](Comm& c) {
      std::vector<float> x(8, 1);
      c.all_reduce(std::span<float>(x)).wait();
      if (c.rank() == 2) throw std::runtime_error("boom on rank 2");
      c.all_reduce(std::span<float>(x)).wait();  // peers block here until the abort
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom on rank 2");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 5.0);  // far below the 30 s watchdog
}

TEST(FakeCommTest, RunFakeRanksReportsOperationsNoPeerMatched) {
  try {
    run_fake_ranks(2, [](Comm& c) {
      static std::vector<float> kept(2, 0);  // outlives the unmatched send
      if (c.rank() == 0) c.send<float>(kept, 1, 7);
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "never matched");
    EXPECT_CONTAINS(std::string(e.what()), "send #0 [f32 x 2 to rank 1, tag 7]");
  }
}

TEST(FakeCommTest, PeersOfARankThatReturnedFailAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    run_fake_ranks(3, [](Comm& c) {
      if (c.rank() == 1) return;  // a bug: rank 1 skips the collective
      std::vector<float> x(2, 1);
      c.all_reduce(std::span<float>(x)).wait();
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "all_reduce #0 [f32 x 2, sum]");
    EXPECT_CONTAINS(std::string(e.what()), "rank 1 of the group returned without posting it");
  }
  try {
    run_fake_ranks(2, [](Comm& c) {
      std::vector<int32_t> x(1);
      if (c.rank() == 0) c.recv(std::span<int32_t>(x), 1).wait();
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "recv #0 [i32 x 1 from rank 1, tag 0]");
    EXPECT_CONTAINS(std::string(e.what()), "rank 1 returned without sending it");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 5.0);  // no watchdog involved
}

TEST(FakeCommTest, SubGroupPeerThatReturnedIsNamedByItsGroupRank) {
  try {
    run_fake_ranks(4, [](Comm& c) {
      auto odd_even = c.split(c.rank() % 2 ? std::vector<int>{1, 3} : std::vector<int>{0, 2});
      if (c.rank() == 3) return;
      std::vector<float> x(1, 1);
      odd_even->all_reduce(std::span<float>(x)).wait();
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "on comm 'world/{1,3}' (rank 0 of 2)");
    EXPECT_CONTAINS(std::string(e.what()), "rank 1 of the group returned without posting it");
  }
}

TEST(FakeCommTest, SplitWithInconsistentGroupsFailsEveryRank) {
  std::atomic<int> failed{0};
  try {
    run_fake_ranks(3, [&](Comm& c) {
      std::vector<int> group = c.rank() == 0 ? std::vector<int>{0, 1} : std::vector<int>{1, 2};
      try {
        c.split(group);
      } catch (const std::runtime_error& e) {
        EXPECT_CONTAINS(std::string(e.what()), "whose group is");
        failed.fetch_add(1);
        throw;
      }
    });
    FAIL() << "run_fake_ranks did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(std::string(e.what()),
                    "rank 0's group {0,1} includes rank 1, whose "
                    "group is {1,2}");
  }
  EXPECT_EQ(failed.load(), 3);
}

TEST(FakeCommTest, GridSubGroupsReduceIndependently) {
  // pp = 2 stages of dp = 4 ranks: dp groups are rows, pp groups columns.
  run_fake_ranks(8, [](Comm& c) {
    const int stage = c.rank() / 4, replica = c.rank() % 4;
    std::vector<int> dp_ranks, pp_ranks;
    for (int d = 0; d < 4; ++d) dp_ranks.push_back(stage * 4 + d);
    for (int s = 0; s < 2; ++s) pp_ranks.push_back(s * 4 + replica);
    auto dp = c.split(dp_ranks, "dp");
    auto pp = c.split(pp_ranks, "pp");
    EXPECT_EQ(dp->rank(), replica);
    EXPECT_EQ(pp->rank(), stage);
    EXPECT_EQ(dp->name(), "dp");
    std::vector<int32_t> a = {c.rank()}, b = {c.rank()};
    // Post on both groups before waiting on either: they progress independently.
    Work wa = dp->all_reduce(std::span<int32_t>(a));
    Work wb = pp->all_reduce(std::span<int32_t>(b));
    wa.wait();
    wb.wait();
    EXPECT_EQ(a[0], stage * 16 + 6);   // sum of 4*stage + {0,1,2,3}
    EXPECT_EQ(b[0], 2 * replica + 4);  // replica + (replica + 4)
  });
}

TEST(FakeCommTest, ReductionsAreBitwiseIdenticalOnEveryRank) {
  std::vector<std::vector<float>> results(5);
  run_fake_ranks(5, [&](Comm& c) {
    std::vector<float> x(64);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * (c.rank() + 1) + 1e-3f * i;
    c.all_reduce(std::span<float>(x)).wait();
    results[c.rank()] = x;
  });
  for (int r = 1; r < 5; ++r) {
    EXPECT_EQ(std::memcmp(results[0].data(), results[r].data(), 64 * sizeof(float)), 0);
  }
}

TEST(FakeCommTest, KeepAliveIsReleasedOnCompletion) {
  auto comms = FakeComm::create_world(2);
  auto owner = std::make_shared<std::vector<float>>(4, 1.0f);
  std::weak_ptr<std::vector<float>> watch = owner;
  Work w0 = comms[0]->all_reduce(std::span<float>(*owner));
  w0.keep_alive(owner);
  std::vector<float> other(4, 2.0f);
  std::span<float> view(*owner);
  owner.reset();
  EXPECT_FALSE(watch.expired());  // the Work holds it while the operation is pending
  comms[1]->all_reduce(std::span<float>(other)).wait();
  EXPECT_TRUE(w0.test());
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(other, std::vector<float>(4, 3.0f));
  (void)view;
}

TEST(FakeCommTest, StatsCountPostsAndCompletions) {
  run_fake_ranks(2, [&](Comm& c) {
    c.reset_stats();
    std::vector<float> x(16, 1);
    c.all_reduce(std::span<float>(x)).wait();
    c.barrier().wait();
    CommStats s = c.stats();
    EXPECT_EQ(s.ops_posted, 2);
    EXPECT_EQ(s.ops_completed, 2);
    // Whether a wait blocked depends on thread timing; its time never exceeds its op's.
    EXPECT_LE(s.wait_seconds, s.op_seconds);
  });
}

}  // namespace
}  // namespace tessera::parallel
