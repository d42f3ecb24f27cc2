// The time-shared cost model: simulate_schedule's result wherever cores are to spare, and
// hand-traced runs where ranks share cores (an instruction alone on a shared core runs faster).
#include "parallel/schedule_time_sharing.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "parallel/schedule_generators.h"

namespace tessera::parallel {
namespace {

// Costs that differ by stage, instruction and chunk, with a transfer latency.
InstructionCosts uneven_costs() {
  return {[](int stage, const Instruction& inst) {
            const double base = 1.0 + 0.25 * stage + 0.125 * inst.chunk;
            switch (inst.op) {
              case Op::kForward: return base;
              case Op::kBackward: return 2.5 * base;
              case Op::kBackwardInput: return 1.25 * base;
              case Op::kBackwardWeight: return 0.75 * base;
              case Op::kForwardBackward: return 3.0 * base;
              default: return 0.0;
            }
          },
          [](int stage, const Instruction&) { return 0.1 + 0.05 * stage; }};
}

InstructionCosts uniform_costs(double comm) {
  return {[](int, const Instruction& inst) {
            return inst.op == Op::kBackward ? 2.0 : 1.0;  // F = B = W = 1
          },
          [comm](int, const Instruction&) { return comm; }};
}

// One rank per stage, all on one node of `cores` cores.
CoreSharing one_node(int pp, int cores) {
  return {std::vector<std::vector<int>>(static_cast<size_t>(pp), std::vector<int>{1}), 1, cores};
}

TEST(ScheduleTimeSharingTest, CoresToSpareGiveTheCostModelsResult) {
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m = 2 * pp; m <= 4 * pp; m += pp) {
      std::vector<Schedule> schedules = {gpipe_schedule(pp, m), one_f_one_b_schedule(pp, m),
                                         interleaved_schedule(pp, m, 2), zb1p_schedule(pp, m),
                                         dualpipev_schedule(pp, m)};
      if (pp % 2 == 0) schedules.push_back(dualpipe_schedule(pp, m));
      for (const Schedule& s : schedules) {
        const SimulatedRun expected = simulate_schedule(s, uneven_costs());
        // As many cores as ranks on one node; and two ranks per stage, one on each of two nodes.
        CoreSharing split{std::vector<std::vector<int>>(static_cast<size_t>(pp), {1, 1}), 2,
                          2 * pp};
        for (const CoreSharing& sharing : {one_node(pp, pp), split}) {
          const SimulatedRun run = simulate_time_shared(s, uneven_costs(), sharing);
          EXPECT_NEAR(run.makespan, expected.makespan, 1e-9) << s.name << " pp=" << pp;
          EXPECT_NEAR(run.bubble_fraction, expected.bubble_fraction, 1e-9) << s.name;
          for (int st = 0; st < pp; ++st) {
            EXPECT_NEAR(run.busy[st], expected.busy[st], 1e-9) << s.name << " stage " << st;
            for (size_t i = 0; i < s.per_stage[st].size(); ++i) {
              EXPECT_NEAR(run.spans[st][i].first, expected.spans[st][i].first, 1e-9);
              EXPECT_NEAR(run.spans[st][i].second, expected.spans[st][i].second, 1e-9);
            }
          }
        }
      }
    }
  }
}

TEST(ScheduleTimeSharingTest, AnInstructionAloneOnASharedCoreRunsAtTheCoresFullSpeed) {
  // 1F1B, pp 2, one micro-batch, two ranks on one core: no two instructions overlap, so each
  // runs in half its cost. F0 [0,0.5]; activation at 1.0; stage 1 F0 [1.0,1.5], BW0 [1.5,2.5];
  // gradient at 3.0; stage 0 BW0 [3.0,4.0].
  const Schedule s = one_f_one_b_schedule(2, 1);
  ASSERT_EQ(to_string(s), "stage 0: F0 SA0>1 RG0<1 BW0\nstage 1: RA0<0 F0 BW0 SG0>0\n");
  const SimulatedRun run = simulate_time_shared(s, uniform_costs(0.5), one_node(2, 1));
  EXPECT_DOUBLE_EQ(run.makespan, 4.0);
  EXPECT_EQ(run.spans[0][0], (std::pair{0.0, 0.5}));
  EXPECT_EQ(run.spans[0][2], (std::pair{0.5, 3.0}));  // RG0 waits from 0.5 to 3
  EXPECT_EQ(run.spans[0][3], (std::pair{3.0, 4.0}));
  EXPECT_EQ(run.spans[1][0], (std::pair{0.0, 1.0}));
  EXPECT_EQ(run.spans[1][2], (std::pair{1.5, 2.5}));
  EXPECT_EQ(run.busy, (std::vector<double>{1.5, 1.5}));
  EXPECT_DOUBLE_EQ(run.bubble_fraction, 1.0 - 3.0 / 8.0);
}

TEST(ScheduleTimeSharingTest, InstructionsChangeSpeedAsOthersStartAndStop) {
  // 1F1B, pp 2, two micro-batches, F = 1 and BW = 2, no latency, two ranks on one core.
  // Stage 0 F0 alone [0,0.5]; F1 beside stage 1's F0 [0.5,1.5]; stage 1 BW0 alone [1.5,2.5];
  // then stage 0 BW0 [2.5,4.5] beside stage 1's F1 [2.5,3.5] and the first half of its BW1,
  // whose second half runs alone [4.5,5.0]; stage 0 BW1 alone [5.0,6.0]. Unshared: 9.
  const Schedule s = one_f_one_b_schedule(2, 2);
  ASSERT_EQ(to_string(s), "stage 0: F0 SA0>1 F1 SA1>1 RG0<1 BW0 RG1<1 BW1\n"
                          "stage 1: RA0<0 F0 BW0 SG0>0 RA1<0 F1 BW1 SG1>0\n");
  const std::vector<std::vector<std::pair<double, double>>> compute = {
      {{0.0, 0.5}, {0.5, 1.5}, {2.5, 4.5}, {5.0, 6.0}},
      {{0.5, 1.5}, {1.5, 2.5}, {2.5, 3.5}, {3.5, 5.0}}};
  // Two threads per rank on two cores share them the same way.
  for (const CoreSharing& sharing : {one_node(2, 1), CoreSharing{{{1}, {1}}, 2, 2}}) {
    const SimulatedRun run = simulate_time_shared(s, uniform_costs(0.0), sharing);
    EXPECT_DOUBLE_EQ(run.makespan, 6.0);
    for (int st = 0; st < 2; ++st) {
      std::vector<std::pair<double, double>> spans;
      for (size_t i = 0; i < s.per_stage[st].size(); ++i) {
        if (is_compute(s.per_stage[st][i].op)) spans.push_back(run.spans[st][i]);
      }
      ASSERT_EQ(spans.size(), 4u);
      for (size_t k = 0; k < 4; ++k) {
        EXPECT_NEAR(spans[k].first, compute[st][k].first, 1e-12) << "stage " << st << " #" << k;
        EXPECT_NEAR(spans[k].second, compute[st][k].second, 1e-12) << "stage " << st << " #" << k;
      }
    }
    EXPECT_NEAR(run.busy[0], 4.5, 1e-12);
    EXPECT_NEAR(run.busy[1], 4.5, 1e-12);
  }
}

TEST(ScheduleTimeSharingTest, AStageRunsAtItsSlowestNodesSpeed) {
  // pp 2, one micro-batch, one-core nodes: stage 0 has a rank alone on node 0 and one on node 1
  // beside stage 1's rank. Node 0 never speeds up, so stage 0 runs at its cost while stage 1
  // runs alone on node 1 at twice its speed: F0 [0,1], stage 1 F0 [1,1.5] and BW0 [1.5,2.5],
  // stage 0 BW0 [2.5,4.5].
  const Schedule s = one_f_one_b_schedule(2, 1);
  const SimulatedRun run =
      simulate_time_shared(s, uniform_costs(0.0), CoreSharing{{{1, 1}, {0, 1}}, 1, 1});
  EXPECT_DOUBLE_EQ(run.makespan, 4.5);
  EXPECT_EQ(run.spans[1][1], (std::pair{1.0, 1.5}));
  EXPECT_EQ(run.spans[1][2], (std::pair{1.5, 2.5}));
  EXPECT_EQ(run.spans[0][3], (std::pair{2.5, 4.5}));
}

TEST(ScheduleTimeSharingTest, BadSharingAndDeadlocksThrow) {
  const Schedule s = one_f_one_b_schedule(2, 1);
  EXPECT_THROW(simulate_time_shared(s, uniform_costs(0.0), one_node(3, 1)), std::invalid_argument);
  EXPECT_THROW(simulate_time_shared(s, uniform_costs(0.0), CoreSharing{{{1}, {1, 0}}, 1, 1}),
               std::invalid_argument);
  EXPECT_THROW(simulate_time_shared(s, uniform_costs(0.0), CoreSharing{{{1}, {0}}, 1, 1}),
               std::invalid_argument);
  EXPECT_THROW(simulate_time_shared(s, uniform_costs(0.0), CoreSharing{{{1}, {1}}, 0, 1}),
               std::invalid_argument);
  Schedule deadlocked = s;
  std::swap(deadlocked.per_stage[0][1], deadlocked.per_stage[0][2]);  // RG0 before SA0
  EXPECT_THROW(simulate_time_shared(deadlocked, uniform_costs(0.0), one_node(2, 1)),
               ScheduleError);
}

}  // namespace
}  // namespace tessera::parallel
