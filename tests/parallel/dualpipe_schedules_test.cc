// DualPipeV and DualPipe: the reference's per-rank orders (the test vectors of V3-FACTS.md, read
// from deepseek-ai/DualPipe), the checker over P = 1..8 and N = 2P..4P, the README's bubbles
// from the cost model, placements, the registry's rows and the layouts they refuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "parallel/placement.h"
#include "parallel/schedule_checker.h"
#include "parallel/schedule_cost.h"
#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"

namespace tessera::parallel {
namespace {

// One stage's compute instructions in the reference's notation: "F<stage>.<micro-batch>" with
// the stage id = virtual stage and micro-batches numbered per direction; B a full backward, I an
// input-gradient-only backward, W a deferred weight step, [a&b] an overlapped FB pair.
std::string reference_order(const Schedule& s, int stage) {
  const Placement& p = s.placement;
  const int per_path = s.micro_batches / p.paths();
  auto unit = [&](const char* kind, int mb, int chunk) {
    const int vs = p.virtual_stage(stage, chunk);
    return kind + std::to_string(vs) + "." + std::to_string(mb % per_path);
  };
  std::string out;
  for (const Instruction& inst : s.per_stage[stage]) {
    std::string item;
    switch (inst.op) {
      case Op::kForward: item = unit("F", inst.micro_batch, inst.chunk); break;
      case Op::kBackward: item = unit("B", inst.micro_batch, inst.chunk); break;
      case Op::kBackwardInput: item = unit("I", inst.micro_batch, inst.chunk); break;
      case Op::kBackwardWeight: item = unit("W", inst.micro_batch, inst.chunk); break;
      case Op::kForwardBackward:
        item = "[" + unit("F", inst.micro_batch, inst.chunk) + "&" +
               unit("B", inst.micro_batch_b, inst.chunk_b) + "]";
        break;
      default: continue;
    }
    out += (out.empty() ? "" : " ") + item;
  }
  return out;
}

TEST(DualPipeSchedulesTest, DualPipeVReproducesTheReferenceOrder) {
  const std::string got = reference_order(dualpipev_schedule(4, 10), 3);
  // V3-FACTS.md's vector: "F3.0 F4.0 ... F3.4 B4.0 [F4.4&B3.0] [F3.5&B4.1] … [F4.9&B3.5] B4.6 B3.6
  // B4.7 B3.7 I4.8 I3.8 I4.9 I3.9 W4.8 W3.8 W4.9 W3.9"; the elided middle is the main phase's
  // alternation FB(0,1) FB(1,0).
  EXPECT_EQ(got,
            "F3.0 F4.0 F3.1 F4.1 F3.2 F4.2 F3.3 F4.3 F3.4 B4.0 [F4.4&B3.0] [F3.5&B4.1] "
            "[F4.5&B3.1] [F3.6&B4.2] [F4.6&B3.2] [F3.7&B4.3] [F4.7&B3.3] [F3.8&B4.4] [F4.8&B3.4] "
            "[F3.9&B4.5] [F4.9&B3.5] B4.6 B3.6 B4.7 B3.7 I4.8 I3.8 I4.9 I3.9 W4.8 W3.8 W4.9 W3.9");
}

TEST(DualPipeSchedulesTest, DualPipeReproducesTheReferenceOrder) {
  // V3-FACTS.md: P=4, N=8, rank 0; ids 4-7 are direction B's stages 0-3 (stage 7 = B's last,
  // held by rank 0).
  EXPECT_EQ(reference_order(dualpipe_schedule(4, 8), 0),
            "F0.0 F0.1 F0.2 F7.0 I7.0 W7.0 F7.1 [F0.3&B7.1] [F7.2&B0.0] B7.2 [F7.3&B0.1] B7.3 "
            "I0.2 W0.2 I0.3 W0.3");
}

TEST(DualPipeSchedulesTest, RankZeroOfDualPipeVStartsWithTheLongestWarmUp) {
  // Phase 1 on rank 0 is 2(P-1) forwards of chunk 0 before the first chunk-1 forward.
  // Then phase 2's F0 F1 and phase 3's B1(zb) W F1.
  const std::string got = reference_order(dualpipev_schedule(3, 6), 0);
  const std::string want = "F0.0 F0.1 F0.2 F0.3 F0.4 F5.0 I5.0 W5.0 F5.1 ";
  EXPECT_EQ(got.substr(0, want.size()), want) << got;
}

TEST(DualPipeSchedulesTest, CheckerAcceptsThemForP1To8AndN2PTo4P) {
  CheckOptions fifo;
  fifo.fifo_channels = true;
  int checked = 0;
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 2 * pp; m <= 4 * pp; ++m) {
      const Schedule v = dualpipev_schedule(pp, m);
      CheckResult r = check_schedule(v, fifo);
      ASSERT_TRUE(r.ok) << "dualpipev pp=" << pp << " m=" << m << "\n" << r.summary();
      ++checked;
      for (int st = 0; st < pp; ++st) {
        // Each stage runs N forwards per chunk, and a W step for each zero-bubble backward:
        // phases 3 and 7 (P-r-1 each) and 8 (r+1).
        int f = 0, w = 0, fb = 0;
        for (const Instruction& inst : v.per_stage[st]) {
          f += inst.op == Op::kForward || inst.op == Op::kForwardBackward;
          w += inst.op == Op::kBackwardWeight;
          fb += inst.op == Op::kForwardBackward;
        }
        EXPECT_EQ(f, 2 * m) << "pp=" << pp << " m=" << m << " stage " << st;
        EXPECT_EQ(w, 2 * (pp - st - 1) + st + 1) << "pp=" << pp << " m=" << m << " stage " << st;
        EXPECT_GT(fb, 0) << "pp=" << pp << " m=" << m << " stage " << st;
      }
      if (pp % 2 == 0 && m % 2 == 0) {
        r = check_schedule(dualpipe_schedule(pp, m), fifo);
        ASSERT_TRUE(r.ok) << "dualpipe pp=" << pp << " m=" << m << "\n" << r.summary();
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, (2 * 36 + 8) + (3 + 5 + 7 + 9));  // dualpipev: 2P+1 values of N per P
}

TEST(DualPipeSchedulesTest, CostModelReproducesTheReadmeBubbles) {
  // The DualPipe README's bubbles, with F = B = W (its setting) and any overlap of an F&B pair
  // between none (3F) and perfect (2F): the most idle stage waits exactly the closed form.
  int compared = 0;
  for (double unit : {0.5, 1.0, 2.0}) {
    for (double overlap : {1.0, 0.9, 0.8, 0.7, 2.0 / 3.0}) {
      OpCosts c{unit, unit, unit, 0.0, overlap * 3 * unit};
      for (int pp = 1; pp <= 8; ++pp) {
        for (int m = 2 * pp; m <= 4 * pp; ++m) {
          for (const char* name : {"dualpipev", "dualpipe", "1f1b", "zb1p"}) {
            const bool mirrored = std::string(name) == "dualpipe";
            if (mirrored && (pp % 2 != 0 || m % 2 != 0)) continue;
            const SimulatedRun run = simulate_schedule(make_schedule(name, pp, m), c);
            double idle = 0;
            for (double busy : run.busy) idle = std::max(idle, run.makespan - busy);
            const double expected = schedule_info(name).idle_time(pp, m, 1, c);
            ASSERT_NEAR(idle, expected, 1e-9) << name << " pp=" << pp << " m=" << m
                                              << " F=" << unit << " F&B=" << c.pair();
            ++compared;
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 1000);
  // The README's ordering at P = 8 stages' worth of ranks, F = B = W = 1, F&B = 2.5: DualPipe on
  // 8 ranks idles (8/2-1)(2.5+2-3) = 4.5, DualPipeV on 4 ranks the same, 1F1B on 8 ranks 21.
  const OpCosts c{1.0, 1.0, 1.0, 0.0, 2.5};
  EXPECT_DOUBLE_EQ(schedule_info("dualpipe").idle_time(8, 16, 1, c), 4.5);
  EXPECT_DOUBLE_EQ(schedule_info("dualpipev").idle_time(4, 16, 1, c), 4.5);
  EXPECT_DOUBLE_EQ(schedule_info("1f1b").idle_time(8, 16, 1, c), 21.0);
}

TEST(DualPipeSchedulesTest, PlacementsHoldTheRightVirtualStages) {
  const Placement v = Placement::v_shape(4);
  EXPECT_EQ(v.virtual_stages(), 8);
  EXPECT_EQ(v.blocks(), 8);
  EXPECT_EQ(v.virtual_stage(0, 0), 0);
  EXPECT_EQ(v.virtual_stage(0, 1), 7);
  EXPECT_EQ(v.virtual_stage(3, 1), 4);
  EXPECT_EQ(v.holder(4), (StageChunk{3, 1}));
  EXPECT_EQ(v.next(3), 4);  // the tip: stage 3 hands chunk 0's output to its own chunk 1
  EXPECT_TRUE(v.last(7));
  EXPECT_FALSE(v.mirrored());

  const Placement d = Placement::bidirectional(4, 8);
  EXPECT_EQ(d.paths(), 2);
  EXPECT_EQ(d.blocks(), 4);
  EXPECT_TRUE(d.mirrored());
  EXPECT_EQ(d.holder(4), (StageChunk{3, 1}));  // direction B's stage 0 on the last rank
  EXPECT_EQ(d.holder(7), (StageChunk{0, 1}));
  EXPECT_EQ(d.block(d.virtual_stage(1, 0)), 1);
  EXPECT_EQ(d.block(d.virtual_stage(1, 1)), 2);  // stage 1 mirrors block 2 of direction B
  EXPECT_TRUE(d.last(3));
  EXPECT_EQ(d.next(3), -1);
  EXPECT_EQ(d.prev(4), -1);
  EXPECT_EQ(d.path_of(3), 0);
  EXPECT_EQ(d.path_of(4), 1);

  const Placement l = Placement::looped(2, 3);
  EXPECT_EQ(l.virtual_stage(1, 2), 5);
  EXPECT_EQ(l.holder(3), (StageChunk{1, 1}));
}

TEST(DualPipeSchedulesTest, BadLayoutsNameTheKeys) {
  auto error_of = [](const std::string& name, int pp, int m, int v = 1) -> std::string {
    try {
      make_schedule(name, pp, m, v);
    } catch (const ScheduleError& e) {
      return e.what();
    }
    return "";
  };
  std::string e = error_of("dualpipe", 3, 6);
  EXPECT_NE(e.find("needs an even parallel.pp"), std::string::npos) << e;
  EXPECT_NE(e.find("got 3"), std::string::npos) << e;
  e = error_of("dualpipe", 4, 6);
  EXPECT_NE(e.find("parallel.micro_batches >= 2 x parallel.pp = 8, got 6"), std::string::npos) << e;
  e = error_of("dualpipe", 4, 9);
  EXPECT_NE(e.find("even parallel.micro_batches"), std::string::npos) << e;
  e = error_of("dualpipev", 4, 7);
  EXPECT_NE(e.find("parallel.micro_batches >= 2 x parallel.pp = 8, got 7"), std::string::npos) << e;
  e = error_of("dualpipev", 2, 4, 2);
  EXPECT_NE(e.find("parallel.virtual_stages=2"), std::string::npos) << e;
  EXPECT_EQ(error_of("dualpipev", 1, 2), "");
  EXPECT_EQ(error_of("dualpipe", 2, 4), "");
}

TEST(DualPipeSchedulesTest, RegistryListsEveryScheduleOnce) {
  const std::vector<std::string> names = schedule_names();
  EXPECT_EQ(names, (std::vector<std::string>{"gpipe", "1f1b", "interleaved", "zb1p", "dualpipev",
                                             "dualpipe"}));
  for (const ScheduleInfo& row : schedule_registry()) {
    EXPECT_FALSE(row.summary.empty()) << row.name;
    EXPECT_TRUE(row.validate && row.placement && row.make && row.idle_time) << row.name;
  }
  EXPECT_TRUE(predicted_bubble("1f1b", 4, 8).closed_form);
  const PredictedBubble v = predicted_bubble("dualpipev", 4, 8);
  EXPECT_FALSE(v.closed_form);
  EXPECT_GT(v.fraction, 0.0);
  EXPECT_LT(v.fraction, predicted_bubble("1f1b", 4, 8).fraction);
}

TEST(DualPipeSchedulesTest, ForwardOnlyListsFollowThePlacement) {
  const Schedule s = forward_only_schedule(Placement::v_shape(2), 2);
  EXPECT_TRUE(check_schedule(s).ok) << check_schedule(s).summary();
  EXPECT_EQ(to_string(s),
            "stage 0: F0c0 SA0c0>1 RA0c1<1 F0c1 F1c0 SA1c0>1 RA1c1<1 F1c1\n"
            "stage 1: RA0c0<0 F0c0 F0c1 SA0c1>0 RA1c0<0 F1c0 F1c1 SA1c1>0\n");
  Schedule bad = s;
  bad.per_stage[0].push_back(Instruction::backward(0, 0));
  EXPECT_NE(check_schedule(bad).summary().find("a forward-only schedule runs no backward"),
            std::string::npos);
}

// Stage `stage`'s compute instructions by model BLOCK and micro-batch within its direction:
// what a mirror pair must agree on (trainer/zero_optimizer.h's posting order).
std::string block_order(const Schedule& s, int stage) {
  const Placement& p = s.placement;
  const int per_path = s.micro_batches / p.paths();
  auto unit = [&](const char* kind, int mb, int chunk) {
    return kind + std::to_string(p.block(p.virtual_stage(stage, chunk))) + "." +
           std::to_string(mb % per_path);
  };
  std::string out;
  for (const Instruction& inst : s.per_stage[stage]) {
    switch (inst.op) {
      case Op::kForward: out += unit("F", inst.micro_batch, inst.chunk); break;
      case Op::kBackward: out += unit("B", inst.micro_batch, inst.chunk); break;
      case Op::kBackwardInput: out += unit("I", inst.micro_batch, inst.chunk); break;
      case Op::kBackwardWeight: out += unit("W", inst.micro_batch, inst.chunk); break;
      case Op::kForwardBackward:
        out += "[" + unit("F", inst.micro_batch, inst.chunk) + "&" +
               unit("B", inst.micro_batch_b, inst.chunk_b) + "]";
        break;
      default: continue;
    }
    out += " ";
  }
  return out;
}

TEST(DualPipeSchedulesTest, MirrorStagesRunTheSameBlocksInTheSameOrder) {
  // Stages k and pp-1-k hold the same two blocks on swapped chunks and share ZeRO-1 groups: the
  // trainer posts a block's gradient reduce-scatter when its last weight step ran, so both must
  // run the same blocks' steps in the same order (the directions swapped).
  for (int pp = 2; pp <= 8; pp += 2) {
    for (int n = 2 * pp; n <= 4 * pp; n += 2) {
      const Schedule s = dualpipe_schedule(pp, n);
      for (int k = 0; k < pp / 2; ++k) {
        EXPECT_EQ(block_order(s, k), block_order(s, pp - 1 - k))
            << "pp=" << pp << " N=" << n << " stage " << k;
      }
    }
  }
  // Not true of every schedule: DualPipeV's stages hold different blocks.
  const Schedule v = dualpipev_schedule(4, 8);
  EXPECT_NE(block_order(v, 0), block_order(v, 3));
}

}  // namespace
}  // namespace tessera::parallel
