// TraceRecorder and TraceSpan: nothing is recorded while disabled, spans carry their name, lane,
// args and an interval inside the span's lifetime, and concurrent recording from several
// threads loses nothing.
#include "parallel/trace_recorder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tessera::parallel {
namespace {

using Clock = TraceRecorder::Clock;
using Us = std::chrono::duration<double, std::micro>;

int64_t arg(const TraceEvent& e, const std::string& key) {
  for (const auto& [k, v] : e.args) {
    if (k == key) return v;
  }
  ADD_FAILURE() << "event " << e.name << " has no arg " << key;
  return -1;
}

TEST(TraceRecorderTest, DisabledRecordsNothing) {
  TraceRecorder rec;
  EXPECT_FALSE(rec.enabled());
  const auto t = Clock::now();
  rec.record(TraceRecorder::kComputeLane, "F", t, t);
  { TraceSpan span(&rec, "B", {{"micro_batch", 1}}); }
  { TraceSpan span(nullptr, "W"); }  // a null recorder is "off" too
  EXPECT_EQ(rec.event_count(), 0u);
  rec.set_enabled(true);
  { TraceSpan span(&rec, "B"); }
  EXPECT_EQ(rec.event_count(), 1u);
  rec.set_enabled(false);
  { TraceSpan span(&rec, "B"); }
  EXPECT_EQ(rec.event_count(), 1u);
}

TEST(TraceRecorderTest, SpanRecordsItsIntervalNameAndArgs) {
  TraceRecorder rec;
  const Clock::time_point origin = Clock::now();
  rec.set_origin(origin);
  rec.set_enabled(true);
  Clock::time_point before, after, inner_before, inner_after;
  before = Clock::now();
  {
    TraceSpan span(&rec, "F", {{"micro_batch", 3}, {"chunk", 1}, {"layer", 7}});
    inner_before = Clock::now();
    { TraceSpan inner(&rec, "attention", {{"layer", 7}}); }
    inner_after = Clock::now();
  }
  after = Clock::now();
  const std::vector<TraceEvent> events = rec.events();
  ASSERT_EQ(events.size(), 2u);
  // The inner span ends first, so it is recorded first.
  const TraceEvent& inner = events[0];
  const TraceEvent& outer = events[1];
  EXPECT_EQ(outer.name, "F");
  EXPECT_EQ(outer.lane, TraceRecorder::kComputeLane);
  EXPECT_EQ(arg(outer, "micro_batch"), 3);
  EXPECT_EQ(arg(outer, "chunk"), 1);
  EXPECT_EQ(arg(outer, "layer"), 7);
  EXPECT_EQ(inner.name, "attention");
  // Times are measured from the origin and lie inside what the caller saw.
  EXPECT_GE(outer.start_us, Us(before - origin).count());
  EXPECT_LE(outer.start_us + outer.duration_us, Us(after - origin).count());
  EXPECT_GE(inner.start_us, Us(inner_before - origin).count());
  EXPECT_LE(inner.start_us + inner.duration_us, Us(inner_after - origin).count());
  // Nesting is preserved.
  EXPECT_LE(outer.start_us, inner.start_us);
  EXPECT_GE(outer.start_us + outer.duration_us, inner.start_us + inner.duration_us);
}

TEST(TraceRecorderTest, LanesAreRegisteredOnceInOrder) {
  TraceRecorder rec;
  EXPECT_EQ(rec.lane("compute"), TraceRecorder::kComputeLane);
  const int ep = rec.lane("comm:ep");
  const int dp = rec.lane("comm:dp");
  EXPECT_EQ(rec.lane("comm:ep"), ep);
  EXPECT_NE(ep, dp);
  EXPECT_EQ(rec.lanes(), (std::vector<std::string>{"compute", "comm:ep", "comm:dp"}));
  rec.set_enabled(true);
  const auto t = Clock::now();
  rec.record(dp, "all_reduce", t, t + std::chrono::microseconds(250), {{"bytes", 4096}});
  const std::vector<TraceEvent> events = rec.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].lane, dp);
  EXPECT_NEAR(events[0].duration_us, 250.0, 1e-6);
  EXPECT_EQ(arg(events[0], "bytes"), 4096);
}

TEST(TraceRecorderTest, UnknownLaneIsAnError) {
  TraceRecorder rec;
  rec.set_enabled(true);
  const auto t = Clock::now();
  EXPECT_THROW(rec.record(5, "x", t, t), std::logic_error);
  EXPECT_THROW(TraceSpan(&rec, "x", {}, 5), std::invalid_argument);
  EXPECT_EQ(rec.event_count(), 0u);
}

TEST(TraceRecorderTest, ClearDropsEventsKeepsLanes) {
  TraceRecorder rec;
  const int lane = rec.lane("comm:pp");
  rec.set_enabled(true);
  { TraceSpan span(&rec, "F"); }
  rec.clear();
  EXPECT_EQ(rec.event_count(), 0u);
  EXPECT_EQ(rec.lane("comm:pp"), lane);
}

// Several threads record at once (as progress threads complete operations while the compute
// thread records spans, and new lanes appear): every event arrives, each exactly once.
TEST(TraceRecorderTest, ConcurrentRecordingLosesNothing) {
  TraceRecorder rec;
  rec.set_enabled(true);
  constexpr int kThreads = 8, kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&rec, t] {
      const int lane = rec.lane("comm:group" + std::to_string(t % 3));
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 2 == 0) {
          TraceSpan span(&rec, "F", {{"thread", t}, {"i", i}});
        } else {
          const auto now = Clock::now();
          rec.record(lane, "send", now, now, {{"thread", t}, {"i", i}});
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  const std::vector<TraceEvent> events = rec.events();
  ASSERT_EQ(events.size(), static_cast<size_t>(kThreads * kPerThread));
  const std::vector<std::string> lanes = rec.lanes();
  EXPECT_EQ(lanes.size(), 4u);  // compute + 3 groups, each registered once
  std::vector<std::vector<int>> seen(kThreads, std::vector<int>(kPerThread, 0));
  for (const TraceEvent& e : events) {
    const int64_t t = arg(e, "thread"), i = arg(e, "i");
    ASSERT_TRUE(t >= 0 && t < kThreads && i >= 0 && i < kPerThread);
    ++seen[t][i];
    EXPECT_EQ(e.name, i % 2 == 0 ? "F" : "send");
    if (i % 2 == 0) {
      EXPECT_EQ(e.lane, TraceRecorder::kComputeLane);
    } else {
      EXPECT_EQ(lanes.at(e.lane), "comm:group" + std::to_string(t % 3));
    }
  }
  for (const auto& per_thread : seen) {
    EXPECT_TRUE(std::all_of(per_thread.begin(), per_thread.end(), [](int c) { return c == 1; }));
  }
}

}  // namespace
}  // namespace tessera::parallel
