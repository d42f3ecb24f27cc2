// StepTracer: records exactly the steps of its range (compute spans and the communicators'
// operations), writes the trace once after the last of them, and does nothing when off.
#include "trainer/step_tracer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "parallel/fake_comm.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class StepTracerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera-step-tracer-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Four steps on two fake ranks, each an "F" span with the step number and one all_reduce on a
  // sub-communicator "dp". Returns, per rank, the steps end_step reported a trace path at.
  void run(std::optional<StepRange> range, std::map<int, std::set<int64_t>>* written) {
    std::mutex mu;
    parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
      std::unique_ptr<parallel::Comm> dp = world.split({0, 1}, "dp");
      StepTracer tracer(range, world, {&world, dp.get(), nullptr, dp.get()},
                        parallel::RankCoords{0, world.rank(), world.rank(), 0}, dir_.string());
      EXPECT_EQ(tracer.recorder() != nullptr, range.has_value());
      for (int64_t step = 1; step <= 4; ++step) {
        tracer.begin_step(step);
        {
          parallel::TraceSpan span(tracer.recorder(), "F", {{"step", step}});
          std::vector<float> g(16, 1.0f);
          dp->all_reduce(std::span<float>(g)).wait();
        }
        const std::string path = tracer.end_step(step, step == 4);
        if (!path.empty()) {
          std::lock_guard<std::mutex> lock(mu);
          (*written)[world.rank()].insert(step);
          EXPECT_EQ(path, (dir_ / "trace.json").string());
        }
      }
    });
  }
  fs::path dir_;
};

TEST_F(StepTracerTest, RecordsTheRangeAndWritesOnceAfterIt) {
  std::map<int, std::set<int64_t>> written;
  run(StepRange{2, 3}, &written);
  EXPECT_EQ(written, (std::map<int, std::set<int64_t>>{{0, {3}}}));  // rank 0, after step 3
  std::ifstream in(dir_ / "trace.json");
  const json doc = json::parse(in);
  std::map<int, std::multiset<int64_t>> f_steps;  // pid -> steps of its F spans
  std::map<int, int> dp_ops;                      // pid -> all_reduces on comm:dp
  std::map<std::pair<int, int>, std::string> lanes;
  std::map<int, std::string> processes;
  for (const json& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "thread_name") {
      lanes[{e.at("pid"), e.at("tid")}] = e.at("args").at("name");
    }
    if (e.at("ph") == "M" && e.at("name") == "process_name") {
      processes[e.at("pid")] = e.at("args").at("name");
    }
  }
  for (const json& e : doc.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    const int pid = e.at("pid");
    const std::string lane = lanes.at({pid, e.at("tid").get<int>() % 1000});
    if (e.at("name") == "F") f_steps[pid].insert(e.at("args").at("step").get<int64_t>());
    if (lane == "comm:dp") {
      EXPECT_EQ(e.at("name"), "all_reduce");
      ++dp_ops[pid];
    }
    // The tracer's own barrier and the writer's gather happen while recording is off.
    EXPECT_NE(lane, "comm:world") << e.dump();
  }
  for (int pid : {0, 1}) {
    EXPECT_EQ(f_steps[pid], (std::multiset<int64_t>{2, 3})) << "rank " << pid;
    EXPECT_EQ(dp_ops[pid], 2) << "rank " << pid;
  }
  EXPECT_EQ(processes.at(1), "rank 1 (pp=0, dp=1, ep=1)");
  EXPECT_TRUE(fs::exists(dir_ / "trace" / "rank-00000.json"));
  EXPECT_TRUE(fs::exists(dir_ / "trace" / "rank-00001.json"));
}

// A run that ends inside the range (a stop signal, or the range's end past the last step of a
// resumed run) still writes what it recorded.
TEST_F(StepTracerTest, RunEndingInsideTheRangeWritesTheTrace) {
  std::map<int, std::set<int64_t>> written;
  run(StepRange{4, 9}, &written);
  EXPECT_EQ(written, (std::map<int, std::set<int64_t>>{{0, {4}}}));
  EXPECT_TRUE(fs::exists(dir_ / "trace.json"));
}

TEST_F(StepTracerTest, OffRecordsAndWritesNothing) {
  std::map<int, std::set<int64_t>> written;
  run(std::nullopt, &written);
  EXPECT_TRUE(written.empty());
  EXPECT_FALSE(fs::exists(dir_ / "trace.json"));
  EXPECT_FALSE(fs::exists(dir_ / "trace"));
}

}  // namespace
}  // namespace tessera::trainer
