// Expert dispatch/combine on the fake communicator: a golden plan, row placement, dispatch then
// combine = identity, the adjoint identity (backward of dispatch = combine) over a grid of (ep, dp)
// layouts, and argument errors.
#include "parallel/expert_dispatch.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel/fake_comm.h"
#include "tests/parallel/expert_dispatch_checks.h"

namespace tessera::parallel {
namespace {

#define EXPECT_CONTAINS(text, part)                      \
  do {                                                   \
    const std::string text_ = (text);                    \
    EXPECT_NE(text_.find(part), std::string::npos)       \
        << "'" << text_ << "' lacks '" << (part) << "'"; \
  } while (0)

// Runs fn on every rank of a world of dp ranks split into EP groups of ep; returns the failures.
std::string on_layout(int ep, int dp, const std::function<std::string(Comm&)>& fn) {
  std::mutex mu;
  std::string failures;
  run_fake_ranks(dp, [&](Comm& world) {
    auto group = testing::split_ep(world, ep);
    std::string f;
    if (group->size() != ep) f += "EP group of size " + std::to_string(group->size()) + "\n";
    f += fn(*group);
    std::lock_guard<std::mutex> lock(mu);
    if (!f.empty()) failures += "world rank " + std::to_string(world.rank()) + ": " + f + "\n";
  });
  return failures;
}

std::string what_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument thrown)";
}

TEST(ExpertDispatchTest, GoldenPlanOnTwoRanks) {
  // Rank 0 owns experts {0, 1}, rank 1 owns {2, 3}.
  const std::vector<std::vector<int64_t>> counts = {{1, 2, 0, 3}, {4, 0, 5, 6}};
  std::vector<DispatchPlan> plans(2);
  run_fake_ranks(2, [&](Comm& c) { plans[c.rank()] = plan_dispatch(c, counts[c.rank()], 4); });
  EXPECT_EQ(plans[0].send_rows, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(plans[0].recv_rows, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(plans[0].local_expert_rows, (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(plans[0].segments,
            (std::vector<ExpertSegment>{{0, 0, 0, 1}, {1, 0, 1, 2}, {0, 1, 3, 4}, {1, 1, 7, 0}}));
  EXPECT_EQ(plans[1].send_rows, (std::vector<int64_t>{4, 11}));
  EXPECT_EQ(plans[1].recv_rows, (std::vector<int64_t>{3, 11}));
  EXPECT_EQ(plans[1].local_expert_rows, (std::vector<int64_t>{5, 9}));
  EXPECT_EQ(plans[1].segments,
            (std::vector<ExpertSegment>{{0, 0, 0, 0}, {1, 0, 0, 3}, {0, 1, 3, 5}, {1, 1, 8, 6}}));
  EXPECT_EQ(plans[1].segment(1, 0), (ExpertSegment{0, 1, 3, 5}));
  EXPECT_EQ(plans[0].total_send_rows(), 6);
  EXPECT_EQ(plans[1].total_recv_rows(), 14);
  EXPECT_EQ(plans[1].experts_per_rank, 2);
  EXPECT_EQ(plans[1].ep_rank, 1);
}

// (ep, dp) with world = dp, pp = 1.
class ExpertDispatchLayoutTest : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(ExpertDispatchLayoutTest, PlacementIdentityAndAdjoint) {
  const auto [ep, dp] = GetParam();
  EXPECT_EQ(on_layout(ep, dp, [](Comm& g) { return testing::check_dispatch_all(g, 17); }), "");
}

INSTANTIATE_TEST_SUITE_P(Layouts, ExpertDispatchLayoutTest,
                         ::testing::Values(std::pair{1, 1}, std::pair{1, 2}, std::pair{2, 2},
                                           std::pair{2, 4}, std::pair{4, 4}, std::pair{1, 4},
                                           std::pair{4, 8}),
                         [](const auto& info) {
                           return "ep" + std::to_string(info.param.first) + "_dp" +
                                  std::to_string(info.param.second);
                         });

// The checks themselves catch a misplaced row: dispatch with one float corrupted in flight.
TEST(ExpertDispatchTest, PlacementCheckDetectsAMisplacedRow) {
  const std::string f = on_layout(2, 2, [](Comm& g) {
    const std::vector<int64_t> counts = {0, 2, 3, 1};
    const DispatchPlan plan = plan_dispatch(g, counts, 4);
    std::vector<float> send = testing::routed_rows(counts, g.rank(), 2);
    std::vector<float> recv(plan.total_recv_rows() * 2);
    std::swap(send[0], send[2]);  // rows 0 and 1 of expert 1 exchanged
    dispatch(g, plan, send, std::span<float>(recv), 2).wait();
    testing::Mismatches m("swapped");
    for (const ExpertSegment& s : plan.segments) {
      for (int64_t r = 0; r < s.rows; ++r) {
        const int64_t i = (s.offset + r) * 2;
        m.expect("recv", i, recv[i],
                 testing::row_value(s.source, g.rank() * 2 + s.local_expert, r, 0));
      }
    }
    return g.rank() == 0 ? m.result() : std::string();
  });
  EXPECT_CONTAINS(f, "swapped: 4 wrong");  // rows 0, 1 col 0 from both sources
}

TEST(ExpertDispatchTest, BadArgumentsThrowNamingTheProblem) {
  run_fake_ranks(2, [](Comm& c) {
    const std::vector<int64_t> three = {1, 2, 3};
    EXPECT_CONTAINS(what_of([&] { plan_dispatch(c, three, 3); }),
                    "n_experts 3 is not a positive multiple of the EP size 2");
    EXPECT_CONTAINS(what_of([&] { plan_dispatch(c, three, 4); }),
                    "counts has 3 entries, expected n_experts = 4");
    const std::vector<int64_t> negative = {1, -2, 3, 4};
    EXPECT_CONTAINS(what_of([&] { plan_dispatch(c, negative, 4); }), "counts[1] = -2 is negative");

    const std::vector<int64_t> counts = {1, 2, 3, 4};  // every rank: sends 3 + 7, receives 2x
    const DispatchPlan plan = plan_dispatch(c, counts, 4);
    ASSERT_EQ(plan.total_send_rows(), 10);
    std::vector<float> send(10 * 4), recv(plan.total_recv_rows() * 4);
    std::vector<float> short_send(9 * 4), long_recv(recv.size() + 1);
    EXPECT_CONTAINS(what_of([&] { dispatch(c, plan, short_send, std::span<float>(recv), 4); }),
                    "the send-layout buffer has 36 floats, expected 10 rows x 4 = 40");
    EXPECT_CONTAINS(
        what_of([&] { dispatch(c, plan, send, std::span<float>(long_recv), 4); }),
        "the receive-layout buffer has " + std::to_string(long_recv.size()) + " floats, expected");
    EXPECT_CONTAINS(what_of([&] { combine(c, plan, recv, std::span<float>(short_send), 4); }),
                    "combine on comm 'world' (rank " + std::to_string(c.rank()) + " of 2)");
    EXPECT_CONTAINS(what_of([&] { dispatch(c, plan, send, std::span<float>(recv), 5); }),
                    "expected 10 rows x 5 = 50");
    EXPECT_CONTAINS(what_of([&] { dispatch(c, plan, {}, {}, 0); }), "width 0 < 1");
    DispatchPlan other = plan;
    other.ep_rank = 1 - c.rank();
    EXPECT_CONTAINS(what_of([&] { dispatch(c, other, send, std::span<float>(recv), 4); }),
                    "the plan was made on rank");
    // Nothing was posted by the failed calls: the group still works.
    dispatch(c, plan, send, std::span<float>(recv), 4).wait();
  });
}

}  // namespace
}  // namespace tessera::parallel
