// PipelineExecutor on the fake communicator (one thread per stage): for every generator, pp 1..4
// and several micro-batch counts, the toy model of pipeline_toy.h gives the serial losses and
// weight gradients on every stage, in the schedule's order of StageCompute calls, for three steps
// in a row (buffer reuse). Also: a hand-made FB schedule, local hand-over between chunks of one
// stage, a failing stage ending every rank, and the constructor's errors.
#include "parallel/pipeline_executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "parallel/schedule_generators.h"
#include "parallel/schedule_registry.h"
#include "tests/parallel/pipeline_toy.h"

namespace tessera::parallel {
namespace {

using testing::ToyStage;

constexpr int64_t kElements = 24;
constexpr int kSteps = 3;

// Runs `steps` steps of s on pp fake ranks; returns every failure ("" when all matched).
std::string run_toy(const Schedule& s, int steps = kSteps, int64_t elements = kElements) {
  const testing::ToyReference ref =
      testing::toy_serial_reference(s.placement, s.micro_batches, elements);
  std::mutex mu;
  std::string failures;
  run_fake_ranks(s.pp(), [&](Comm& comm) {
    kernels::CpuBackend cpu;
    PipelineExecutor exec(comm, s, elements, cpu);
    ToyStage toy(s, comm.rank(), elements);
    std::string f;
    size_t pool_after_first = 0;
    for (int step = 0; step < steps; ++step) {
      toy.begin_step();
      const PipelineStepStats stats = exec.run(toy);
      const std::string mismatch = testing::check_toy_stage(s, toy, ref);
      if (!mismatch.empty()) f += "step " + std::to_string(step) + ": " + mismatch;
      if (stats.instructions != static_cast<int64_t>(s.per_stage[comm.rank()].size())) {
        f += "stats.instructions = " + std::to_string(stats.instructions) + "\n";
      }
      if (!(stats.compute_s >= 0 && stats.wait_s >= 0 &&
            stats.compute_s + stats.wait_s <= stats.total_s)) {
        f += "inconsistent times: compute " + std::to_string(stats.compute_s) + " wait " +
             std::to_string(stats.wait_s) + " total " + std::to_string(stats.total_s) + "\n";
      }
      if (step == 0) pool_after_first = exec.pool_buffers();
    }
    // No communication: the pool is exactly the first step's high-water mark. With it, buffers
    // whose send completed late may add a few, never more than the messages of one step.
    const size_t bound = 2 * static_cast<size_t>(s.micro_batches) * s.chunks();
    if (s.pp() == 1 ? exec.pool_buffers() != pool_after_first : exec.pool_buffers() > bound) {
      f += "pool grew to " + std::to_string(exec.pool_buffers()) + " buffers (first step " +
           std::to_string(pool_after_first) + ")\n";
    }
    // The plan bounds the pool without running, exactly when nothing is sent.
    const size_t planned =
        static_cast<size_t>(PipelineExecutor::PlannedPoolBuffers(s, comm.rank()));
    if (s.pp() == 1 ? exec.pool_buffers() != planned : exec.pool_buffers() > planned) {
      f += "pool of " + std::to_string(exec.pool_buffers()) + " buffers, planned " +
           std::to_string(planned) + "\n";
    }
    std::lock_guard<std::mutex> lock(mu);
    failures += f;
  });
  return failures;
}

TEST(PipelineExecutorTest, MatchesSerialForEveryGenerator) {
  int runs = 0;
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m : {1, pp, pp + 1, 2 * pp, 3 * pp + 1}) {
      for (const char* name : {"gpipe", "1f1b", "zb1p"}) {
        const Schedule s = make_schedule(name, pp, m);
        ASSERT_EQ(run_toy(s), "") << to_string(s);
        ++runs;
      }
    }
  }
  EXPECT_EQ(runs, 4 * 5 * 3);
}

TEST(PipelineExecutorTest, MatchesSerialInterleaved) {
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m : {pp, 2 * pp}) {
      const Schedule s = interleaved_schedule(pp, m, 2);
      ASSERT_EQ(run_toy(s), "") << to_string(s);
    }
  }
  // Three chunks, and one stage holding every chunk (all hand-overs local).
  ASSERT_EQ(run_toy(interleaved_schedule(2, 4, 3)), "");
  ASSERT_EQ(run_toy(interleaved_schedule(1, 3, 4)), "");
}

TEST(PipelineExecutorTest, MatchesSerialDualPipe) {
  // DualPipeV's V (local hand-over at the tip) and DualPipe's two directions: each mirrored
  // block's holders sum their own direction's gradients.
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m : {2 * pp, 2 * pp + 1, 4 * pp}) {
      const Schedule v = dualpipev_schedule(pp, m);
      ASSERT_EQ(run_toy(v), "") << to_string(v);
      if (pp % 2 == 0 && m % 2 == 0) {
        const Schedule d = dualpipe_schedule(pp, m);
        ASSERT_EQ(run_toy(d), "") << to_string(d);
      }
    }
  }
}

// 1F1B with each steady-state (F, BW) pair fused into one FB instruction.
Schedule fused_1f1b(int pp, int m) {
  Schedule s;
  s.name = "fb-1f1b";
  s.placement = Placement::looped(pp, 1);
  s.micro_batches = m;
  s.per_stage.resize(pp);
  for (int st = 0; st < pp; ++st) {
    auto& l = s.per_stage[st];
    const bool first = st == 0;
    const bool last = st == pp - 1;
    auto recv_act = [&](int mb) {
      if (!first) l.push_back(Instruction::recv_activation(mb, 0, st - 1));
    };
    auto send_act = [&](int mb) {
      if (!last) l.push_back(Instruction::send_activation(mb, 0, st + 1));
    };
    auto recv_grad = [&](int mb) {
      if (!last) l.push_back(Instruction::recv_grad(mb, 0, st + 1));
    };
    auto send_grad = [&](int mb) {
      if (!first) l.push_back(Instruction::send_grad(mb, 0, st - 1));
    };
    const int warmup = std::min(pp - 1 - st, m);
    int f = 0;
    int b = 0;
    for (; f < warmup; ++f) {
      recv_act(f);
      l.push_back(Instruction::forward(f));
      send_act(f);
    }
    for (; f < m; ++f, ++b) {
      recv_act(f);
      recv_grad(b);
      l.push_back(Instruction::forward_backward(f, 0, b, 0));
      send_act(f);
      send_grad(b);
    }
    for (; b < m; ++b) {
      recv_grad(b);
      l.push_back(Instruction::backward(b));
      send_grad(b);
    }
  }
  return s;
}

TEST(PipelineExecutorTest, ForwardBackwardRunsForwardThenFullBackward) {
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m : {pp, 2 * pp + 1}) {
      const Schedule s = fused_1f1b(pp, m);
      ASSERT_EQ(run_toy(s), "") << to_string(s);
    }
  }
}

TEST(PipelineExecutorTest, FailingStageEndsEveryRank) {
  const Schedule s = one_f_one_b_schedule(4, 8);
  std::atomic<int> threw{0};
  FakeCommOptions options;
  options.timeout_s = 20;
  const auto t0 = std::chrono::steady_clock::now();
  std::string error;
  try {
    run_fake_ranks(
        4,
        [&](Comm& comm) {
          kernels::CpuBackend cpu;
          PipelineExecutor exec(comm, s, kElements, cpu);
          ToyStage toy(s, comm.rank(), kElements);
          if (comm.rank() == 1) toy.fail_at_forward(2);
          try {
            exec.run(toy);
          } catch (...) {
            ++threw;
            throw;
          }
        },
        options);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(error.find("injected failure on stage 1 at F2"), std::string::npos) << error;
  EXPECT_EQ(threw.load(), 4) << "every stage depends on stage 1 within the step";
  EXPECT_LT(seconds, 10.0) << "peers waited for the watchdog instead of failing promptly";
}

TEST(PipelineExecutorTest, RunsAgainAfterAFailedStep) {
  const Schedule s = interleaved_schedule(1, 3, 2);
  const auto ref = testing::toy_serial_reference(s.placement, 3, kElements);
  run_fake_ranks(1, [&](Comm& comm) {
    kernels::CpuBackend cpu;
    PipelineExecutor exec(comm, s, kElements, cpu);
    ToyStage toy(s, 0, kElements);
    toy.fail_at_forward(1);
    EXPECT_THROW(exec.run(toy), std::runtime_error);
    toy.fail_at_forward(-1);
    toy.begin_step();
    exec.run(toy);
    EXPECT_EQ(testing::check_toy_stage(s, toy, ref), "");
  });
}

std::string constructor_error(int world, const Schedule& s, int64_t elements = kElements) {
  auto comms = FakeComm::create_world(world);
  try {
    kernels::CpuBackend cpu;
    PipelineExecutor exec(*comms[0], s, elements, cpu);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(PipelineExecutorTest, ConstructorErrors) {
  EXPECT_NE(constructor_error(3, one_f_one_b_schedule(2, 4)).find("parallel.pp=2"),
            std::string::npos);
  EXPECT_NE(constructor_error(2, one_f_one_b_schedule(2, 4), 0).find("boundary_elements=0"),
            std::string::npos);

  Schedule broken = one_f_one_b_schedule(2, 4);
  auto& l = broken.per_stage[0];
  l.erase(std::find(l.begin(), l.end(), Instruction::send_activation(1, 0, 1)));
  const std::string e = constructor_error(2, broken);
  EXPECT_NE(e.find("is not a valid schedule"), std::string::npos) << e;
  EXPECT_NE(e.find("RA1<0"), std::string::npos) << e;

  // 2 kinds x m x 2 virtual stages tags: 8192 micro-batches use tags 0..32767 exactly.
  EXPECT_EQ(constructor_error(2, gpipe_schedule(2, 8192)), "");
  const std::string tags = constructor_error(2, gpipe_schedule(2, 8193));
  EXPECT_NE(tags.find("parallel.micro_batches=8193"), std::string::npos) << tags;
  EXPECT_NE(tags.find("virtual stages"), std::string::npos) << tags;
  // Without communication no tag is needed.
  EXPECT_EQ(constructor_error(1, gpipe_schedule(1, 20000)), "");
}

TEST(PipelineExecutorTest, BubbleFraction) {
  PipelineStepStats stats;
  EXPECT_EQ(stats.bubble_fraction(), 0.0);
  stats.total_s = 2.0;
  stats.compute_s = 0.5;
  EXPECT_DOUBLE_EQ(stats.bubble_fraction(), 0.75);
}

}  // namespace
}  // namespace tessera::parallel
