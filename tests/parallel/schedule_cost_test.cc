// The cost model's simulated bubble against the closed forms (computed independently), timing
// rules with communication latency, and the ASCII timeline.
#include "parallel/schedule_cost.h"

#include <gtest/gtest.h>

#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"

namespace tessera::parallel {
namespace {

const OpCosts kUniform{1.0, 1.0, 1.0, 0.0};
const std::vector<OpCosts> kCostGrid = {
    {1.0, 1.0, 1.0, 0.0}, {1.0, 2.0, 1.0, 0.0}, {2.0, 1.0, 1.0, 0.0}, {1.0, 1.0, 0.5, 0.0},
    {1.0, 2.0, 2.0, 0.0}, {1.0, 1.0, 3.0, 0.0}, {3.0, 1.0, 1.5, 0.0}, {0.7, 1.3, 0.9, 0.0},
};

TEST(ScheduleCostTest, OneFOneBAndGpipeMatchTheClosedForm) {
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 4 * pp; ++m) {
      const double expected = static_cast<double>(pp - 1) / (m + pp - 1);
      for (const OpCosts& c : kCostGrid) {
        EXPECT_NEAR(simulate_schedule(one_f_one_b_schedule(pp, m), c).bubble_fraction, expected,
                    1e-12)
            << "pp=" << pp << " m=" << m;
        EXPECT_NEAR(simulate_schedule(gpipe_schedule(pp, m), c).bubble_fraction, expected, 1e-12)
            << "pp=" << pp << " m=" << m;
      }
      EXPECT_DOUBLE_EQ(predicted_bubble("1f1b", pp, m).fraction, expected);
      EXPECT_DOUBLE_EQ(predicted_bubble("gpipe", pp, m).fraction, expected);
    }
  }
  // Makespan with uniform costs: (m + pp - 1)(F + B + W).
  EXPECT_DOUBLE_EQ(simulate_schedule(one_f_one_b_schedule(4, 8), kUniform).makespan, 11 * 3.0);
}

TEST(ScheduleCostTest, InterleavedMatchesTheClosedForm) {
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = pp; m <= 4 * pp; m += pp) {
      for (int v : {2, 3}) {
        const double expected = static_cast<double>(pp - 1) / (v * m + pp - 1);
        for (const OpCosts& c : kCostGrid) {
          EXPECT_NEAR(simulate_schedule(interleaved_schedule(pp, m, v), c).bubble_fraction,
                      expected, 1e-12)
              << "pp=" << pp << " m=" << m << " v=" << v;
        }
        EXPECT_DOUBLE_EQ(predicted_bubble("interleaved", pp, m, v).fraction, expected);
      }
    }
  }
}

TEST(ScheduleCostTest, Zb1pMatchesTheClosedFormAndBeats1f1b) {
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = pp; m <= 4 * pp; ++m) {
      for (const OpCosts& c : kCostGrid) {
        const double f = c.forward, b = c.backward_input, w = c.backward_weight;
        const double idle = (pp - 1) * std::max({f, b, f + b - w});
        const double expected = idle / (idle + m * (f + b + w));
        const double simulated = simulate_schedule(zb1p_schedule(pp, m), c).bubble_fraction;
        EXPECT_NEAR(simulated, expected, 1e-12) << "pp=" << pp << " m=" << m << " F=" << f
                                                << " B=" << b << " W=" << w;
        EXPECT_NEAR(predicted_bubble("zb1p", pp, m, 1, c).fraction, expected, 1e-12);
        EXPECT_TRUE(predicted_bubble("zb1p", pp, m, 1, c).closed_form);
        if (pp > 1) {
          EXPECT_LT(simulated, simulate_schedule(one_f_one_b_schedule(pp, m), c).bubble_fraction);
        }
      }
      // Equal costs: a third of 1F1B's idle time, as the paper's ZB-H1.
      EXPECT_NEAR(simulate_schedule(zb1p_schedule(pp, m), kUniform).makespan,
                  3.0 * m + (pp - 1), 1e-12);
    }
  }
}

TEST(ScheduleCostTest, CommunicationLatencyDelaysTheReceiver) {
  // pp 2, one micro-batch: F0 on stage 0 [0,1]; activation usable at 1.5; stage 1 F0 [1.5,2.5],
  // BW0 [2.5,4.5]; gradient usable at 5; stage 0 BW0 [5,7].
  const OpCosts c{1.0, 1.0, 1.0, 0.5};
  const Schedule s = one_f_one_b_schedule(2, 1);
  ASSERT_EQ(to_string(s), "stage 0: F0 SA0>1 RG0<1 BW0\nstage 1: RA0<0 F0 BW0 SG0>0\n");
  const SimulatedRun run = simulate_schedule(s, c);
  EXPECT_DOUBLE_EQ(run.makespan, 7.0);
  EXPECT_EQ(run.spans[0][2], (std::pair{1.0, 5.0}));  // RG0 waits from 1 to 5
  EXPECT_EQ(run.spans[0][3], (std::pair{5.0, 7.0}));
  EXPECT_EQ(run.spans[1][0], (std::pair{0.0, 1.5}));
  EXPECT_EQ(run.spans[1][2], (std::pair{2.5, 4.5}));
  EXPECT_EQ(run.spans[1][3], (std::pair{4.5, 4.5}));  // a send takes no time
  EXPECT_EQ(run.busy, (std::vector<double>{3.0, 3.0}));
  EXPECT_DOUBLE_EQ(run.bubble_fraction, 1.0 - 6.0 / 14.0);
}

TEST(ScheduleCostTest, DeadlockAndUnknownNamesThrow) {
  Schedule s = one_f_one_b_schedule(2, 1);
  std::swap(s.per_stage[0][1], s.per_stage[0][2]);  // RG0 before SA0: both stages wait
  EXPECT_THROW(simulate_schedule(s), ScheduleError);
  EXPECT_THROW(predicted_bubble("pipedream", 4, 8), ScheduleError);
  EXPECT_THROW(predicted_bubble("1f1b", 0, 8), ScheduleError);
}

TEST(ScheduleCostTest, AsciiTimeline) {
  // Hand-traced. 1F1B: stage 1's BW0 ends at 4, so stage 0's BW0 runs [4,6] and BW1 [7,9].
  // ZB1P: stage 0 waits one step for the first gradient; stage 1 defers W0 behind B1.
  EXPECT_EQ(timeline_ascii(one_f_one_b_schedule(2, 2)),
            "s0 |F0 F1 ......BW0   ...BW1   |\n"
            "s1 |...F0 BW0   F1 BW1   ......|\n");
  EXPECT_EQ(timeline_ascii(zb1p_schedule(2, 2)),
            "s0 |F0 F1 ...B0 W0 B1 W1 |\n"
            "s1 |...F0 B0 F1 B1 W0 W1 |\n");
}

}  // namespace
}  // namespace tessera::parallel
