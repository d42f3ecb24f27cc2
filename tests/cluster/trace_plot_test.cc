// `tessera trace plot`: reading a Chrome trace into timeline rows (kinds, lanes, times in ms),
// errors that name the file for missing, malformed and empty traces, and the PNG gnuplot draws
// (or the error saying gnuplot is missing).
#include "cluster/trace_plot.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace tessera::cluster {
namespace {

namespace fs = std::filesystem;

// A two-rank trace as trainer/chrome_trace.cc writes it (compute lane 0, comm:ep lane 1, and a
// second row of comm:dp at tid 1002).
constexpr const char* kTrace = R"json({"displayTimeUnit": "ms", "traceEvents": [
  {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "rank 0 (pp=0, dp=0, ep=0)"}},
  {"name": "thread_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "compute"}},
  {"name": "thread_name", "ph": "M", "pid": 0, "tid": 1, "args": {"name": "comm:ep"}},
  {"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "compute"}},
  {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1002, "args": {"name": "comm:dp #2"}},
  {"name": "F", "ph": "X", "pid": 0, "tid": 0, "ts": 1000, "dur": 2000, "cat": "compute", "args": {"micro_batch": 0}},
  {"name": "all_to_all_v", "ph": "X", "pid": 0, "tid": 1, "ts": 1500, "dur": 500, "cat": "comm", "args": {"bytes": 64}},
  {"name": "B", "ph": "X", "pid": 1, "tid": 0, "ts": 3000, "dur": 1000, "cat": "compute", "args": {}},
  {"name": "W experts", "ph": "X", "pid": 1, "tid": 0, "ts": 4000, "dur": 1000, "cat": "compute", "args": {}},
  {"name": "Wrap", "ph": "X", "pid": 1, "tid": 0, "ts": 5000, "dur": 100, "cat": "compute", "args": {}},
  {"name": "reduce_scatter", "ph": "X", "pid": 1, "tid": 1002, "ts": 4200, "dur": 900, "cat": "comm", "args": {}},
  {"name": "wait all_to_all_v", "ph": "X", "pid": 0, "tid": 0, "ts": 1600, "dur": 300, "cat": "compute", "args": {}}
]})json";

class TracePlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera-trace-plot-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& text) const {
    const fs::path p = dir_ / "trace.json";
    std::ofstream(p) << text;
    return p.string();
  }
  // The message of read_timeline's error, or "" when it reads the file.
  static std::string read_error(const std::string& path) {
    try {
      read_timeline(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

bool gnuplot_on_path() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const fs::path candidate = fs::path(dirs.substr(start, end - start)) / "gnuplot";
    if (access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

TEST_F(TracePlotTest, ReadsRowsKindsAndMilliseconds) {
  const Timeline t = read_timeline(write(kTrace));
  EXPECT_EQ(t.pids, (std::vector<int>{0, 1}));
  EXPECT_EQ(t.process_names, (std::vector<std::string>{"rank 0 (pp=0, dp=0, ep=0)", "rank 1"}));
  ASSERT_EQ(t.boxes.size(), 7u);
  std::vector<std::string> kinds;
  for (const TimelineBox& b : t.boxes) kinds.push_back(b.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"F", "comm", "B", "W", "other", "comm", "wait"}));
  EXPECT_FALSE(t.boxes[0].comm);
  EXPECT_TRUE(t.boxes[1].comm);
  EXPECT_TRUE(t.boxes[5].comm);  // a second row of a comm lane is still communication
  EXPECT_EQ(t.boxes[1].pid, 0);
  EXPECT_DOUBLE_EQ(t.boxes[0].start_ms, 0.0);  // from the first event
  EXPECT_DOUBLE_EQ(t.boxes[1].start_ms, 0.5);
  EXPECT_DOUBLE_EQ(t.boxes[1].duration_ms, 0.5);
  EXPECT_DOUBLE_EQ(t.end_ms, 4.1);
}

TEST_F(TracePlotTest, BadTracesAreErrorsNamingTheFile) {
  const std::string missing = (dir_ / "nowhere" / "trace.json").string();
  EXPECT_NE(read_error(missing).find(missing), std::string::npos) << read_error(missing);

  struct Case {
    const char* text;
    const char* needle;
  };
  for (const Case& c : {Case{"{not json", "not JSON"},
                        Case{"[1, 2]", "\"traceEvents\" array"},
                        Case{R"({"traceEvents": {}})", "\"traceEvents\" array"},
                        Case{R"({"traceEvents": []})", "no complete"},
                        Case{R"({"traceEvents": [{"name": "thread_name", "ph": "M", "pid": 0,
                                "tid": 0, "args": {"name": "compute"}}]})",
                             "no complete"},
                        Case{R"({"traceEvents": [{"name": "F", "ph": "X", "pid": 0, "tid": 0,
                                "dur": 5}]})",
                             "traceEvents[0]: malformed event"},
                        Case{R"({"traceEvents": [{"name": "F", "ph": "X", "pid": 0, "tid": 0,
                                "ts": 1, "dur": -5}]})",
                             "dur >= 0"}}) {
    const std::string path = write(c.text);
    const std::string msg = read_error(path);
    EXPECT_EQ(msg.rfind(path, 0), 0u) << c.text << " -> " << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << c.text << " -> " << msg;
  }
}

TEST_F(TracePlotTest, ScriptDrawsEveryKindPresentAndNamesTheRanks) {
  const std::string script = timeline_script(read_timeline(write(kTrace)), "/tmp/x.png", 800);
  EXPECT_NE(script.find("set terminal png"), std::string::npos);
  EXPECT_NE(script.find("set output '/tmp/x.png'"), std::string::npos);
  EXPECT_NE(script.find("size 800,"), std::string::npos);
  for (const char* title : {"F forward", "B backward-input", "W backward-weight",
                            "other compute", "communication"}) {
    EXPECT_NE(script.find(title), std::string::npos) << title;
  }
  EXPECT_NE(script.find("rank 0 (pp=0, dp=0, ep=0)  compute"), std::string::npos);
  EXPECT_NE(script.find("rank 1  compute"), std::string::npos);
}

TEST_F(TracePlotTest, PlotWritesAPngOrSaysGnuplotIsMissing) {
  write(kTrace);
  TracePlotOptions options;
  options.width = 640;
  if (!gnuplot_on_path()) {
    try {
      plot_trace(dir_.string(), options);
      FAIL() << "plotted without gnuplot";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("gnuplot"), std::string::npos) << e.what();
    }
    return;
  }
  const std::string png = plot_trace(dir_.string(), options);
  EXPECT_EQ(png, (dir_ / "trace.png").string());
  std::ifstream in(png, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  EXPECT_EQ(std::string(sig, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_GT(fs::file_size(png), 1000u);
  EXPECT_TRUE(fs::exists(dir_ / "trace.gp"));  // kept, to edit and rerun

  options.out = (dir_ / "elsewhere.png").string();
  EXPECT_EQ(plot_trace((dir_ / "trace.json").string(), options), options.out);
  EXPECT_TRUE(fs::exists(options.out));
}

TEST_F(TracePlotTest, MissingGnuplotIsAClearError) {
  write(kTrace);
  const std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (dir_ / "empty-bin").c_str(), 1);
  std::string msg;
  try {
    plot_trace(dir_.string(), {});
  } catch (const std::runtime_error& e) {
    msg = e.what();
  }
  setenv("PATH", saved.c_str(), 1);
  EXPECT_NE(msg.find("cannot run gnuplot"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gnuplot-nox"), std::string::npos) << msg;
}

}  // namespace
}  // namespace tessera::cluster
