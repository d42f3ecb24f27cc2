// Argument checks of the Comm interface (shared by every backend: they run before posting) and
// the Work handle itself.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::parallel {
namespace {

// The message of the std::invalid_argument `fn` throws, or "" if it throws none.
template <typename Fn>
std::string invalid_argument_message(Fn fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_REJECTED(call, part)                                       \
  do {                                                                    \
    const std::string message_ = invalid_argument_message([&] { call; }); \
    EXPECT_NE(message_.find(part), std::string::npos)                     \
        << "message '" << message_ << "' lacks '" << (part) << "'";       \
  } while (0)

class CommArgsTest : public ::testing::Test {
 protected:
  // Rank 1 of 3; the other ranks never post, so nothing may reach the rendezvous.
  CommArgsTest() : comms_(FakeComm::create_world(3)), c_(*comms_[1]) {}
  void TearDown() override {
    EXPECT_EQ(c_.stats().ops_posted, 0) << "an invalid call posted an operation";
  }
  std::vector<std::unique_ptr<FakeComm>> comms_;
  Comm& c_;
};

TEST_F(CommArgsTest, AllReduceSizesAndOverlap) {
  std::vector<float> a(4), b(5), buf(8);
  EXPECT_REJECTED(c_.all_reduce<float>(a, std::span<float>(b)),
                  "all_reduce on comm 'world' (rank 1 of 3): input has 4 elements but output "
                  "has 5");
  std::span<float> all(buf);
  EXPECT_REJECTED(c_.all_reduce<float>(all.subspan(0, 4), all.subspan(2, 4)),
                  "overlap without being identical");
}

TEST_F(CommArgsTest, ReduceScatterSizesAndAliasing) {
  std::vector<float> in(9), out(2);
  EXPECT_REJECTED(c_.reduce_scatter<float>(in, std::span<float>(out)),
                  "input has 9 elements, expected size() * output = 3 * 2");
  std::span<float> all(in);
  // Rank 1's slice is [3, 6); slice 0 overlaps the input but is the wrong slice.
  EXPECT_REJECTED(c_.reduce_scatter<float>(all, all.subspan(0, 3)), "not its slice rank()");
}

TEST_F(CommArgsTest, AllGatherSizesAndAliasing) {
  std::vector<int32_t> in(2), out(7);
  EXPECT_REJECTED(c_.all_gather<int32_t>(in, std::span<int32_t>(out)),
                  "output has 7 elements, expected size() * input = 3 * 2");
  std::vector<int32_t> buf(6);
  std::span<int32_t> all(buf);
  EXPECT_REJECTED(c_.all_gather<int32_t>(all.subspan(4, 2), all), "not its slice rank()");
}

TEST_F(CommArgsTest, AllToAllVCountsAndBlocks) {
  std::vector<double> in(6), out(6);
  AllToAllVOptions o{{1, 1}, {1, 1, 1}, {}, {}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(in, std::span<double>(out), o),
                  "send_counts has 2 entries, expected 3");
  o = {{1, -1, 1}, {1, 1, 1}, {}, {}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(in, std::span<double>(out), o),
                  "negative send_counts {1,-1,1}");
  o = {{1, 1, 1}, {3, 3, 1}, {}, {}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(in, std::span<double>(out), o),
                  "recv block for rank 2 [6, 7) lies outside the recv buffer of 6 elements");
  o = {{1, 1, 1}, {2, 2, 0}, {}, {0, 1, 5}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(in, std::span<double>(out), o), "recv blocks overlap");
  o = {{1, 1, 1}, {1, 1, 1}, {0, 1}, {}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(in, std::span<double>(out), o),
                  "send_displs has 2 entries, expected 3 (or none for packed)");
  std::vector<double> buf(8);
  std::span<double> all(buf);
  o = {{1, 1, 1}, {1, 1, 1}, {}, {}};
  EXPECT_REJECTED(c_.all_to_all_v<double>(all.subspan(0, 4), all.subspan(2, 4), o),
                  "overlap without being the same buffer");
}

TEST_F(CommArgsTest, PeersRootsAndTags) {
  std::vector<float> x(2);
  EXPECT_REJECTED(c_.send<float>(x, 3),
                  "send on comm 'world' (rank 1 of 3): peer/root rank 3 "
                  "is out of range [0, 3)");
  EXPECT_REJECTED(c_.recv(std::span<float>(x), -1), "peer/root rank -1");
  EXPECT_REJECTED(c_.send<float>(x, 0, Comm::kMaxTag + 1), "tag 32768 is out of range");
  EXPECT_REJECTED(c_.broadcast(std::span<float>(x), 5), "broadcast on comm 'world'");
}

TEST_F(CommArgsTest, SplitGroups) {
  EXPECT_REJECTED(c_.split({0, 2}), "the group world/{0,2} does not contain this rank");
  EXPECT_REJECTED(c_.split({1, 1}), "rank 1 appears twice");
  EXPECT_REJECTED(c_.split({1, 3}), "rank 3 is out of range [0, 3)");
}

WorkState::Options options(std::string description) {
  WorkState::Options o;
  o.description = std::move(description);
  return o;
}

TEST(WorkTest, EmptyWorkIsCompleteAndSuccessful) {
  Work w;
  EXPECT_TRUE(w.test());
  EXPECT_NO_THROW(w.wait());
  EXPECT_FALSE(w.defined());
  EXPECT_EQ(w.description(), "(empty work)");
}

TEST(WorkTest, WaitAllWaitsForEveryWorkThenRethrowsTheFirstError) {
  auto failed = std::make_shared<WorkState>(options("first"));
  auto late = std::make_shared<WorkState>(options("late"));
  failed->complete(std::make_exception_ptr(std::runtime_error("first failed")));
  std::thread completer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    late->complete();
  });
  std::vector<Work> works = {Work(failed), Work(late)};
  try {
    wait_all(works);
    FAIL() << "wait_all did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "first failed");
  }
  EXPECT_TRUE(late->done());  // waited for, although the first had failed
  completer.join();
}

TEST(WorkTest, CompleteIsIdempotentAndFirstOutcomeWins) {
  auto s = std::make_shared<WorkState>(options("op"));
  EXPECT_TRUE(s->complete());
  EXPECT_FALSE(s->complete(std::make_exception_ptr(std::runtime_error("late error"))));
  EXPECT_NO_THROW(Work(s).wait());
  EXPECT_GE(Work(s).elapsed_seconds(), 0.0);
}

TEST(WorkTest, ElapsedSecondsOfAnUnfinishedWorkIsAnError) {
  auto s = std::make_shared<WorkState>(options("pending op"));
  EXPECT_THROW(Work(s).elapsed_seconds(), std::logic_error);
}

}  // namespace
}  // namespace tessera::parallel
