// Chrome trace documents: the JSON read back field by field (complete events, metadata naming
// processes and lanes, overlapping operations of one lane on rows of their own, nesting kept),
// the merge of ranks' documents, and the collective writer on the fake communicator.
#include "trainer/chrome_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/fake_comm.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using parallel::TraceEvent;

TraceEvent event(const std::string& name, int lane, double start, double dur,
                 std::vector<std::pair<std::string, int64_t>> args = {}) {
  TraceEvent e;
  e.name = name;
  e.lane = lane;
  e.start_us = start;
  e.duration_us = dur;
  e.args = std::move(args);
  return e;
}

std::vector<json> of_phase(const json& doc, const std::string& ph) {
  std::vector<json> out;
  for (const json& e : doc.at("traceEvents")) {
    if (e.at("ph") == ph) out.push_back(e);
  }
  return out;
}

// (pid, tid) -> thread name, from the metadata events.
std::map<std::pair<int, int>, std::string> thread_names(const json& doc) {
  std::map<std::pair<int, int>, std::string> names;
  for (const json& e : of_phase(doc, "M")) {
    if (e.at("name") == "thread_name") {
      names[{e.at("pid").get<int>(), e.at("tid").get<int>()}] = e.at("args").at("name");
    }
  }
  return names;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ChromeTraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera-chrome-trace-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ChromeTraceTest, DocumentHoldsCompleteEventsAndNamesProcessAndLanes) {
  const std::vector<std::string> lanes = {"compute", "comm:dp", "comm:ep"};
  const std::vector<TraceEvent> events = {
      event("layer", 0, 12.0, 30.0, {{"layer", 2}}),  // inside F, recorded first (ended first)
      event("F", 0, 10.0, 50.0, {{"micro_batch", 1}, {"chunk", 0}}),
      event("all_to_all_v", 2, 15.0, 20.0, {{"bytes", 4096}, {"recv_bytes", 2048}}),
  };
  const json doc = json::parse(chrome_trace_json(events, lanes, 3, "rank 3 (pp=1, dp=1, ep=1)"));
  EXPECT_EQ(doc.at("displayTimeUnit"), "ms");
  const std::vector<json> complete = of_phase(doc, "X");
  ASSERT_EQ(complete.size(), 3u);
  std::map<std::string, json> by_name;
  for (const json& e : complete) by_name[e.at("name")] = e;
  const json& f = by_name.at("F");
  EXPECT_EQ(f.at("ts").get<double>(), 10.0);
  EXPECT_EQ(f.at("dur").get<double>(), 50.0);
  EXPECT_EQ(f.at("pid").get<int>(), 3);
  EXPECT_EQ(f.at("tid").get<int>(), 0);
  EXPECT_EQ(f.at("cat"), "compute");
  EXPECT_EQ(f.at("args").at("micro_batch").get<int>(), 1);
  EXPECT_EQ(f.at("args").at("chunk").get<int>(), 0);
  // A nested event stays on its lane's row.
  EXPECT_EQ(by_name.at("layer").at("tid").get<int>(), 0);
  const json& a2a = by_name.at("all_to_all_v");
  EXPECT_EQ(a2a.at("tid").get<int>(), 2);
  EXPECT_EQ(a2a.at("cat"), "comm");
  EXPECT_EQ(a2a.at("args").at("bytes").get<int>(), 4096);
  EXPECT_EQ(a2a.at("args").at("recv_bytes").get<int>(), 2048);

  std::string process;
  for (const json& m : of_phase(doc, "M")) {
    if (m.at("name") == "process_name") process = m.at("args").at("name");
  }
  EXPECT_EQ(process, "rank 3 (pp=1, dp=1, ep=1)");
  const auto names = thread_names(doc);
  EXPECT_EQ(names.at({3, 0}), "compute");
  EXPECT_EQ(names.at({3, 1}), "comm:dp");
  EXPECT_EQ(names.at({3, 2}), "comm:ep");
}

// Two reduce-scatters in flight together cannot share a Chrome thread: the second goes to a
// row of its own (tid lane + 1000), named after the lane; a later one reuses the first row.
TEST_F(ChromeTraceTest, OverlappingOperationsOfOneLaneGetRowsOfTheirOwn) {
  const std::vector<std::string> lanes = {"compute", "comm:dp"};
  const std::vector<TraceEvent> events = {
      event("reduce_scatter", 1, 0.0, 100.0),
      event("reduce_scatter", 1, 50.0, 100.0),   // overlaps the first, not nested
      event("reduce_scatter", 1, 120.0, 10.0),  // after the first ended
  };
  const json doc = json::parse(chrome_trace_json(events, lanes, 0, "rank 0"));
  std::map<double, int> tid_at;
  for (const json& e : of_phase(doc, "X")) tid_at[e.at("ts").get<double>()] = e.at("tid");
  EXPECT_EQ(tid_at.at(0.0), 1);
  EXPECT_EQ(tid_at.at(50.0), 1001);
  EXPECT_EQ(tid_at.at(120.0), 1);
  const auto names = thread_names(doc);
  EXPECT_EQ(names.at({0, 1}), "comm:dp");
  EXPECT_EQ(names.at({0, 1001}), "comm:dp #2");
}

// Events that touch stay on one row though their sums differ in the last bits (the planner's
// times are sums of doubles): 0.1 + 0.2 ends after 0.3 starts.
TEST_F(ChromeTraceTest, TouchingEventsShareARowDespiteRounding) {
  const std::vector<std::string> lanes = {"compute"};
  const std::vector<TraceEvent> events = {
      event("F", 0, 0.0, 1.0),
      event("F attention", 0, 0.1, 0.2),  // ends at 0.30000000000000004
      event("F ffn", 0, 0.3, 0.5),
  };
  const json doc = json::parse(chrome_trace_json(events, lanes, 0, "rank 0"));
  for (const json& e : of_phase(doc, "X")) EXPECT_EQ(e.at("tid").get<int>(), 0) << e.at("name");
}

TEST_F(ChromeTraceTest, MergeKeepsEveryRanksEventsAndNamesABadDocument) {
  const std::vector<std::string> lanes = {"compute", "comm:world"};
  const std::string r0 = chrome_trace_json({event("F", 0, 0, 5)}, lanes, 0, "rank 0");
  const std::string r1 = chrome_trace_json({event("send", 1, 1, 2)}, lanes, 1, "rank 1");
  const json merged = json::parse(merge_chrome_traces({r0, r1}, {"a", "b"}));
  EXPECT_EQ(merged.at("displayTimeUnit"), "ms");
  const std::vector<json> complete = of_phase(merged, "X");
  ASSERT_EQ(complete.size(), 2u);
  EXPECT_EQ(complete[0].at("pid").get<int>(), 0);
  EXPECT_EQ(complete[1].at("pid").get<int>(), 1);
  EXPECT_EQ(thread_names(merged).at({1, 1}), "comm:world");

  try {
    merge_chrome_traces({r0, "{\"traceEvents\": 3}"}, {"rank 0's", "rank 1's"});
    FAIL() << "a document without a traceEvents array was merged";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1's"), std::string::npos) << e.what();
  }
  EXPECT_THROW(merge_chrome_traces({"not json"}, {"x"}), std::runtime_error);
}

TEST_F(ChromeTraceTest, WriterGathersEveryRankOntoRankZero) {
  const std::string run_dir = dir_.string();
  parallel::run_fake_ranks(3, [&](parallel::Comm& world) {
    parallel::TraceRecorder rec;
    const int lane = rec.lane("comm:world");
    rec.set_enabled(true);
    const auto t = parallel::TraceRecorder::Clock::now();
    // Rank r records r + 1 events, so the gather moves documents of different lengths.
    for (int i = 0; i <= world.rank(); ++i) {
      rec.record(i % 2 ? lane : 0, i % 2 ? "recv" : "F", t, t, {{"i", i}});
    }
    const ChromeTraceFiles files =
        write_chrome_traces(world, rec, "rank " + std::to_string(world.rank()), run_dir);
    char name[32];
    std::snprintf(name, sizeof name, "rank-%05d.json", world.rank());
    EXPECT_EQ(files.rank_file, (fs::path(run_dir) / "trace" / name).string());
    const json mine = json::parse(read(files.rank_file));
    EXPECT_EQ(of_phase(mine, "X").size(), static_cast<size_t>(world.rank() + 1));
    if (world.rank() != 0) {
      EXPECT_EQ(files.merged, "");
    } else {
      EXPECT_EQ(files.merged, (fs::path(run_dir) / "trace.json").string());
    }
  });
  const json merged = json::parse(read(dir_ / "trace.json"));
  std::map<int, int> per_rank;
  for (const json& e : of_phase(merged, "X")) ++per_rank[e.at("pid").get<int>()];
  EXPECT_EQ(per_rank, (std::map<int, int>{{0, 1}, {1, 2}, {2, 3}}));
}

// A rank that cannot write its file says which file, after the gather: no peer is left waiting.
TEST_F(ChromeTraceTest, UnwritableRankFileIsNamedAndPeersFinish) {
  const fs::path blocker = dir_ / "blocked";
  std::ofstream(blocker) << "a file where a run directory should be";
  parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
    parallel::TraceRecorder rec;
    const std::string run_dir = world.rank() == 1 ? blocker.string() : dir_.string();
    if (world.rank() == 1) {
      try {
        write_chrome_traces(world, rec, "rank 1", run_dir);
        ADD_FAILURE() << "writing under a regular file succeeded";
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(blocker.string()), std::string::npos) << e.what();
      }
    } else {
      EXPECT_NO_THROW(write_chrome_traces(world, rec, "rank 0", run_dir));
    }
  });
}

}  // namespace
}  // namespace tessera::trainer
