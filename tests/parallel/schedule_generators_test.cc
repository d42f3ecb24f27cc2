// Every generator's output passes the checker (with first-in first-out channels) for pp 1..8 and
// micro-batches 1..4pp; hand-written golden lists for small cases; memory bounds; make_schedule's
// names and errors.
#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "parallel/schedule_checker.h"

namespace tessera::parallel {
namespace {

std::string error_of(const std::string& name, int pp, int m, int v) {
  try {
    make_schedule(name, pp, m, v);
  } catch (const ScheduleError& e) {
    return e.what();
  }
  return "";
}

void expect_valid(const Schedule& s) {
  CheckOptions o;
  o.fifo_channels = true;
  const CheckResult r = check_schedule(s, o);
  ASSERT_TRUE(r.ok) << s.name << " pp=" << s.pp() << " m=" << s.micro_batches << " v=" << s.chunks()
                    << "\n" << r.summary() << to_string(s);
}

TEST(ScheduleGeneratorsTest, CheckerAcceptsEveryGeneratorForPp1To8) {
  int checked = 0;
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 4 * pp; ++m) {
      for (const char* name : {"gpipe", "1f1b", "zb1p"}) {
        expect_valid(make_schedule(name, pp, m));
        if (HasFatalFailure()) return;
        ++checked;
      }
      if (m % pp == 0) {
        for (int v : {2, 3}) {
          expect_valid(make_schedule("interleaved", pp, m, v));
          if (HasFatalFailure()) return;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 3 * (4 * 36) + 2 * (4 * 8));
}

TEST(ScheduleGeneratorsTest, Golden1f1b) {
  EXPECT_EQ(to_string(one_f_one_b_schedule(2, 3)),
            "stage 0: F0 SA0>1 F1 SA1>1 RG0<1 BW0 F2 SA2>1 RG1<1 BW1 RG2<1 BW2\n"
            "stage 1: RA0<0 F0 BW0 SG0>0 RA1<0 F1 BW1 SG1>0 RA2<0 F2 BW2 SG2>0\n");
}

TEST(ScheduleGeneratorsTest, GoldenGpipe) {
  EXPECT_EQ(to_string(gpipe_schedule(2, 2)),
            "stage 0: F0 SA0>1 F1 SA1>1 RG0<1 BW0 RG1<1 BW1\n"
            "stage 1: RA0<0 F0 RA1<0 F1 BW0 SG0>0 BW1 SG1>0\n");
}

TEST(ScheduleGeneratorsTest, GoldenZb1p) {
  // Stage s runs W of micro-batch j right after B of j + s; the last stage defers the most.
  EXPECT_EQ(to_string(zb1p_schedule(3, 4)),
            "stage 0: F0 SA0>1 F1 SA1>1 F2 SA2>1 RG0<1 B0 W0 F3 SA3>1 RG1<1 B1 W1 RG2<1 B2 W2 "
            "RG3<1 B3 W3\n"
            "stage 1: RA0<0 F0 SA0>2 RA1<0 F1 SA1>2 RG0<2 B0 SG0>0 RA2<0 F2 SA2>2 RG1<2 B1 SG1>0 "
            "W0 RA3<0 F3 SA3>2 RG2<2 B2 SG2>0 W1 RG3<2 B3 SG3>0 W2 W3\n"
            "stage 2: RA0<1 F0 B0 SG0>1 RA1<1 F1 B1 SG1>1 RA2<1 F2 B2 SG2>1 W0 RA3<1 F3 B3 SG3>1 "
            "W1 W2 W3\n");
}

TEST(ScheduleGeneratorsTest, GoldenInterleaved) {
  // pp 2, 2 micro-batches, 2 chunks: stage 0 (warm-up min(2 + 2, 4)) runs every forward first;
  // chunk 1 of stage 0 takes its input from stage 1's chunk 0 and backward visits chunk 1 first.
  EXPECT_EQ(to_string(interleaved_schedule(2, 2, 2)),
            "stage 0: F0c0 SA0c0>1 F1c0 SA1c0>1 RA0c1<1 F0c1 SA0c1>1 RA1c1<1 F1c1 SA1c1>1 "
            "RG0c1<1 BW0c1 SG0c1>1 RG1c1<1 BW1c1 SG1c1>1 RG0c0<1 BW0c0 RG1c0<1 BW1c0\n"
            "stage 1: RA0c0<0 F0c0 SA0c0>0 RA1c0<0 F1c0 SA1c0>0 RA0c1<0 F0c1 BW0c1 SG0c1>0 "
            "RA1c1<0 F1c1 BW1c1 SG1c1>0 RG0c0<0 BW0c0 SG0c0>0 RG1c0<0 BW1c0 SG1c0>0\n");
}

TEST(ScheduleGeneratorsTest, SingleStageHasNoCommunication) {
  for (const Schedule& s : {gpipe_schedule(1, 3), one_f_one_b_schedule(1, 3), zb1p_schedule(1, 3),
                            interleaved_schedule(1, 3, 2)}) {
    for (const Instruction& inst : s.per_stage[0]) EXPECT_TRUE(is_compute(inst.op)) << s.name;
  }
  EXPECT_EQ(to_string(one_f_one_b_schedule(1, 2)), "stage 0: F0 BW0 F1 BW1\n");
  EXPECT_EQ(to_string(zb1p_schedule(1, 2)), "stage 0: F0 B0 W0 F1 B1 W1\n");
}

TEST(ScheduleGeneratorsTest, PeakActivationsMatchEachScheduleMemoryBound) {
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = pp; m <= 4 * pp; ++m) {
      const auto gpipe = check_schedule(gpipe_schedule(pp, m)).peak_activations;
      const auto f1b1 = check_schedule(one_f_one_b_schedule(pp, m)).peak_activations;
      const auto zb = check_schedule(zb1p_schedule(pp, m)).peak_activations;
      for (int s = 0; s < pp; ++s) {
        EXPECT_EQ(gpipe[s], m);            // GPipe keeps every micro-batch
        EXPECT_EQ(f1b1[s], pp - s);        // 1F1B: warm-up + 1
        EXPECT_LE(zb[s], pp);              // ZB-H1: 1F1B's peak (stage 0's) on every stage
      }
      EXPECT_EQ(*std::max_element(zb.begin(), zb.end()), pp);
    }
  }
}

TEST(ScheduleGeneratorsTest, MakeScheduleNamesAndErrors) {
  EXPECT_EQ(schedule_names(),
            (std::vector<std::string>{"gpipe", "1f1b", "interleaved", "zb1p", "dualpipev",
                                      "dualpipe"}));
  EXPECT_EQ(make_schedule("1f1b", 4, 8).name, "1f1b");
  EXPECT_EQ(make_schedule("interleaved", 4, 8, 2).chunks(), 2);
  EXPECT_EQ(make_schedule("dualpipev", 4, 8).chunks(), 2);

  std::string e = error_of("pipedream", 4, 8, 1);
  EXPECT_NE(e.find("parallel.schedule='pipedream' is unknown"), std::string::npos) << e;
  EXPECT_NE(e.find("gpipe, 1f1b, interleaved, zb1p"), std::string::npos) << e;
  e = error_of("interleaved", 4, 6, 2);
  EXPECT_NE(e.find("parallel.micro_batches=6"), std::string::npos) << e;
  EXPECT_NE(e.find("parallel.pp=4"), std::string::npos) << e;
  e = error_of("interleaved", 4, 8, 1);
  EXPECT_NE(e.find("parallel.virtual_stages >= 2"), std::string::npos) << e;
  e = error_of("1f1b", 4, 8, 2);
  EXPECT_NE(e.find("parallel.virtual_stages=2"), std::string::npos) << e;
  e = error_of("zb1p", 0, 8, 1);
  EXPECT_NE(e.find("parallel.pp=0"), std::string::npos) << e;
  e = error_of("gpipe", 2, 0, 1);
  EXPECT_NE(e.find("parallel.micro_batches=0"), std::string::npos) << e;
}

TEST(ScheduleGeneratorsTest, InstructionNames) {
  EXPECT_EQ(to_string(Instruction::forward(3, 0)), "F3c0");
  EXPECT_EQ(to_string(Instruction::forward(3, 0), false), "F3");
  EXPECT_EQ(to_string(Instruction::backward(3, 1)), "BW3c1");
  EXPECT_EQ(to_string(Instruction::backward_input(3)), "B3c0");
  EXPECT_EQ(to_string(Instruction::backward_weight(3), false), "W3");
  EXPECT_EQ(to_string(Instruction::forward_backward(3, 0, 2, 1)), "FB3c0/2c1");
  EXPECT_EQ(to_string(Instruction::send_activation(3, 0, 1), false), "SA3>1");
  EXPECT_EQ(to_string(Instruction::recv_activation(3, 1, 0)), "RA3c1<0");
  EXPECT_EQ(to_string(Instruction::send_grad(3, 1, 0)), "SG3c1>0");
  EXPECT_EQ(to_string(Instruction::recv_grad(3, 1, 2)), "RG3c1<2");
}

}  // namespace
}  // namespace tessera::parallel
