// ActivityBoard summaries and rank lists, the text liveness checks are made of (no MPI: the
// census itself is tested under mpirun by liveness_mpitest).
#include <gtest/gtest.h>

#include <string>

#include "parallel/activity_board.h"
#include "parallel/liveness.h"

namespace tessera::parallel {
namespace {

TEST(ActivityBoard, EmptyBoardSaysItIsOutsideCommunication) {
  ActivityBoard board;
  EXPECT_EQ(board.summary(1000), "outside communication (nothing outstanding)");
}

TEST(ActivityBoard, ListsOldestFirstUntilEnded) {
  ActivityBoard board;
  const ActivityBoard::Id a = board.begin("all_reduce #1 on comm 'dp'");
  const ActivityBoard::Id b = board.begin("recv #4 on comm 'pp'");
  std::string s = board.summary(1000);
  EXPECT_EQ(s.find("waiting "), 0u) << s;
  EXPECT_LT(s.find("all_reduce #1"), s.find("recv #4")) << s;
  board.end(a);
  s = board.summary(1000);
  EXPECT_EQ(s.find("all_reduce"), std::string::npos) << s;
  EXPECT_NE(s.find("recv #4"), std::string::npos) << s;
  board.end(b);
  EXPECT_EQ(board.size(), 0u);
}

TEST(ActivityBoard, SummaryFitsItsLimitAndCountsWhatItLeftOut) {
  ActivityBoard board;
  for (int i = 0; i < 50; ++i) board.begin("all_to_all_v #" + std::to_string(i) + " on comm 'ep'");
  const std::string s = board.summary(200);
  EXPECT_LE(s.size(), 200u);
  EXPECT_NE(s.find(" more"), std::string::npos) << s;
  // One entry longer than the limit is cut, not dropped.
  ActivityBoard one;
  one.begin(std::string(500, 'x'));
  EXPECT_EQ(one.summary(100).size(), 100u);
}

TEST(FormatRankList, CompactsRunsAndCapsItems) {
  EXPECT_EQ(format_rank_list({}), "");
  EXPECT_EQ(format_rank_list({3}), "3");
  EXPECT_EQ(format_rank_list({0, 1}), "0,1");
  EXPECT_EQ(format_rank_list({0, 1, 2, 3, 7, 9, 10}), "0-3,7,9,10");
  EXPECT_EQ(format_rank_list({0, 2, 4, 6, 8}, 3), "0,2,4,... (5 ranks)");
}

}  // namespace
}  // namespace tessera::parallel
