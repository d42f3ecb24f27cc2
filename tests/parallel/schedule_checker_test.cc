// The checker rejects deliberately broken schedules with errors that name the problem, and
// accepts hand-made valid ones (including the overlapped FB instruction).
#include "parallel/schedule_checker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"

namespace tessera::parallel {
namespace {

// Index of the first instruction equal to `inst` on `stage` (fails the test if none).
size_t find(const Schedule& s, int stage, const Instruction& inst) {
  const auto& list = s.per_stage[stage];
  const auto it = std::find(list.begin(), list.end(), inst);
  EXPECT_NE(it, list.end()) << to_string(inst) << " not on stage " << stage;
  return static_cast<size_t>(it - list.begin());
}

void erase(Schedule& s, int stage, const Instruction& inst) {
  auto& list = s.per_stage[stage];
  list.erase(list.begin() + static_cast<std::ptrdiff_t>(find(s, stage, inst)));
}

// True when some error contains every one of `parts`.
bool has_error(const CheckResult& r, std::initializer_list<std::string> parts) {
  for (const auto& e : r.errors) {
    bool all = true;
    for (const auto& p : parts) all = all && e.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

TEST(ScheduleCheckerTest, DroppedReceiveIsReported) {
  Schedule s = one_f_one_b_schedule(2, 2);
  erase(s, 1, Instruction::recv_activation(0, 0, 0));
  const CheckResult r = check_schedule(s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"stage 0", "SA0>1", "never received"})) << r.summary();
  EXPECT_TRUE(has_error(r, {"stage 1", "F0", "input activation arrived"})) << r.summary();
}

TEST(ScheduleCheckerTest, DroppedSendIsADeadlock) {
  Schedule s = one_f_one_b_schedule(3, 3);
  erase(s, 2, Instruction::send_grad(1, 0, 1));
  const CheckResult r = check_schedule(s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"stage 1", "RG1<2", "no matching SG"})) << r.summary();
  EXPECT_TRUE(has_error(r, {"deadlock", "stage 1", "RG1<2", "waits for stage 2"})) << r.summary();
}

TEST(ScheduleCheckerTest, BackwardBeforeForwardIsReported) {
  Schedule s = one_f_one_b_schedule(2, 2);
  auto& last = s.per_stage[1];
  std::swap(last[find(s, 1, Instruction::forward(0))], last[find(s, 1, Instruction::backward(0))]);
  const CheckResult r = check_schedule(s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"stage 1", "BW0", "runs before F0"})) << r.summary();
}

TEST(ScheduleCheckerTest, ReceiveAfterItsConsumerIsReported) {
  Schedule s = one_f_one_b_schedule(2, 2);
  auto& first = s.per_stage[0];
  std::swap(first[find(s, 0, Instruction::recv_grad(1, 0, 1))],
            first[find(s, 0, Instruction::backward(1))]);  // BW1 before RG1
  const CheckResult r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"stage 0", "BW1", "output gradient arrived (no earlier RG1)"}))
      << r.summary();
}

TEST(ScheduleCheckerTest, DuplicateWeightStepIsReported) {
  Schedule s = zb1p_schedule(2, 3);
  s.per_stage[0].push_back(Instruction::backward_weight(1));
  const CheckResult r = check_schedule(s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"stage 0", "W1", "runs twice"})) << r.summary();
}

TEST(ScheduleCheckerTest, MissingWeightStepIsReported) {
  Schedule s = zb1p_schedule(2, 3);
  erase(s, 1, Instruction::backward_weight(2));
  const CheckResult r = check_schedule(s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"stage 1 never runs W2"})) << r.summary();
}

TEST(ScheduleCheckerTest, WeightBeforeInputGradientIsReported) {
  Schedule s = zb1p_schedule(2, 2);
  auto& list = s.per_stage[0];
  const size_t w = find(s, 0, Instruction::backward_weight(0));
  list.insert(list.begin(), list[w]);
  list.erase(list.begin() + static_cast<std::ptrdiff_t>(w) + 1);
  const CheckResult r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"stage 0 #0 W0", "runs before B0"})) << r.summary();
}

TEST(ScheduleCheckerTest, CyclicWaitIsADeadlockNamingEveryStuckStage) {
  // Stage 0 waits for the gradient of micro-batch 0 before sending its activation: each stage
  // waits for the other.
  Schedule s = one_f_one_b_schedule(2, 2);
  auto& first = s.per_stage[0];
  const size_t rg = find(s, 0, Instruction::recv_grad(0, 0, 1));
  const Instruction moved = first[rg];
  first.erase(first.begin() + static_cast<std::ptrdiff_t>(rg));
  first.insert(first.begin(), moved);
  const CheckResult r = check_schedule(s);
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(has_error(r, {"deadlock", "stage 0 #0 RG0<1 waits for stage 1",
                            "stage 1 #0 RA0<0 waits for stage 0"}))
      << r.summary();
}

TEST(ScheduleCheckerTest, SendBeforeItsDataExistsIsReported) {
  Schedule s = gpipe_schedule(2, 1);
  std::swap(s.per_stage[0][0], s.per_stage[0][1]);  // SA0>1 before F0
  const CheckResult r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"stage 0 #0 SA0>1", "sends before F0"})) << r.summary();
}

TEST(ScheduleCheckerTest, WrongPeersAndRangesAreReported) {
  Schedule s = one_f_one_b_schedule(3, 2);
  s.per_stage[0][find(s, 0, Instruction::send_activation(0, 0, 1))].peer = 2;
  CheckResult r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"SA0>2", "the peer must be stage 1"})) << r.summary();

  s = one_f_one_b_schedule(3, 2);
  s.per_stage[2].push_back(Instruction::send_activation(1, 0, 0));  // nothing after the last stage
  r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"stage 2", "last virtual stage has no next stage"})) << r.summary();

  s = one_f_one_b_schedule(3, 2);
  s.per_stage[1].push_back(Instruction::forward(5));
  r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"stage 1", "F5", "out of range"})) << r.summary();

  s = one_f_one_b_schedule(3, 2);
  s.per_stage.pop_back();
  r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"2 stage lists but pp=3"})) << r.summary();
}

TEST(ScheduleCheckerTest, LocalChunkOrderIsCheckedOnOneStage) {
  // pp = 1 with two chunks: chunk 1 consumes chunk 0's output with no message.
  Schedule s = interleaved_schedule(1, 1, 2);
  ASSERT_EQ(to_string(s), "stage 0: F0c0 F0c1 BW0c1 BW0c0\n");
  EXPECT_TRUE(check_schedule(s).ok);
  std::swap(s.per_stage[0][0], s.per_stage[0][1]);
  CheckResult r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"F0c1", "runs before F0c0, which makes its input"})) << r.summary();
  s = interleaved_schedule(1, 1, 2);
  std::swap(s.per_stage[0][2], s.per_stage[0][3]);
  r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"BW0c0", "runs before the backward of 0c1"})) << r.summary();
}

TEST(ScheduleCheckerTest, FifoChannelsAreOptional) {
  // Sends posted out of order are fine for tagged (MPI) matching, not for NCCL-style channels.
  Schedule s = gpipe_schedule(2, 2);
  auto& first = s.per_stage[0];
  std::swap(first[find(s, 0, Instruction::send_activation(0, 0, 1))],
            first[find(s, 0, Instruction::send_activation(1, 0, 1))]);
  ASSERT_EQ(to_string(s.per_stage[0][0]), "F0c0");
  EXPECT_FALSE(check_schedule(s).ok) << "SA1 now precedes F1";
  s = gpipe_schedule(2, 2);
  // F0 F1 SA1 SA0: valid data flow, but activations arrive out of order.
  s.per_stage[0] = {Instruction::forward(0), Instruction::forward(1),
                    Instruction::send_activation(1, 0, 1), Instruction::send_activation(0, 0, 1),
                    s.per_stage[0][4], s.per_stage[0][5], s.per_stage[0][6], s.per_stage[0][7]};
  EXPECT_TRUE(check_schedule(s).ok) << check_schedule(s).summary();
  CheckOptions fifo;
  fifo.fifo_channels = true;
  const CheckResult r = check_schedule(s, fifo);
  EXPECT_TRUE(has_error(r, {"channel stage 0 -> stage 1 (activations) is not first-in first-out"}))
      << r.summary();
}

TEST(ScheduleCheckerTest, ForwardBackwardPairIsAForwardAndAFullBackward) {
  Schedule s;
  s.name = "hand-made FB";
  s.placement = Placement::looped(1, 1);
  s.micro_batches = 2;
  s.per_stage = {{Instruction::forward(0), Instruction::forward_backward(1, 0, 0, 0),
                  Instruction::backward(1)}};
  CheckResult r = check_schedule(s);
  EXPECT_TRUE(r.ok) << r.summary();
  EXPECT_EQ(r.peak_activations, (std::vector<int>{2}));
  // Its backward half must come after its own forward.
  s.per_stage = {{Instruction::forward_backward(0, 0, 1, 0), Instruction::forward(1),
                  Instruction::backward(0)}};
  r = check_schedule(s);
  EXPECT_TRUE(has_error(r, {"FB0/1", "the backward of 1 runs before F1"})) << r.summary();
}

TEST(ScheduleCheckerTest, ErrorListIsCapped) {
  Schedule s = gpipe_schedule(1, 40);
  for (auto& inst : s.per_stage[0]) {
    if (inst.op == Op::kBackward) inst.op = Op::kBackwardInput;  // 40 missing W
  }
  CheckOptions o;
  o.max_errors = 5;
  const CheckResult r = check_schedule(s, o);
  ASSERT_EQ(r.errors.size(), 6u);
  EXPECT_EQ(r.errors.back(), "... and 35 more errors");
}

}  // namespace
}  // namespace tessera::parallel
