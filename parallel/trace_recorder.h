// TraceRecorder: the events of a Chrome trace (DESIGN.md "One training step", 5), recorded by
// one process. An event is a complete interval {name, lane, start, duration, integer args} on a
// lane: "compute" (lane 0, what the compute thread runs) or "comm:<communicator name>" (a Comm's
// operations, post -> completion, see Comm::set_trace). Lanes become Chrome thread ids.
//
// Times are microseconds from the recorder's origin (set_origin); the trainer sets it right
// after a barrier so that the ranks' traces line up.
//
// No globals: the trainer owns one recorder per process and hands it to whoever records
// (Comm::set_trace, TraceSpan). Disabled (the default) it records nothing and costs one relaxed
// atomic load per would-be event.
//
// Thread-safety: every member is safe to call from any thread (communication completes on
// progress threads).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::parallel {

// One integer argument of an event: {"micro_batch", 3}, {"bytes", 4096}.
struct TraceArg {
  std::string_view key;
  int64_t value = 0;
};

struct TraceEvent {
  std::string name;  // "F", "B", "W", "all_to_all_v", "send", ...
  int lane = 0;      // index into TraceRecorder::lanes()
  double start_us = 0;     // from the origin (negative if it began before the origin)
  double duration_us = 0;  // >= 0
  std::vector<std::pair<std::string, int64_t>> args;
};

class TraceRecorder {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kComputeLane = 0;  // named "compute"

  // Disabled, origin = now, one lane ("compute").
  TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  void set_enabled(bool on) { enabled_.store(on, std::memory_order_relaxed); }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // Events' times are measured from `origin`. Set it before enabling (events already recorded
  // keep the times they were recorded with).
  void set_origin(Clock::time_point origin = Clock::now());

  // The id of the lane called `name`, registered on first use (ids are dense, in order of
  // registration). Lane names are e.g. "compute", "comm:ep".
  int lane(std::string_view name);
  std::vector<std::string> lanes() const;
  int lane_count() const;

  // Records [start, end) on `lane` when enabled; does nothing otherwise. Throws
  // std::logic_error for a lane that lane() never returned.
  void record(int lane, std::string_view name, Clock::time_point start, Clock::time_point end,
              std::initializer_list<TraceArg> args = {});
  void record(int lane, std::string_view name, Clock::time_point start, Clock::time_point end,
              const std::vector<TraceArg>& args);

  // A copy of the events so far, in the order they were recorded (which is the order they ENDED
  // in on each thread, not the order they started).
  std::vector<TraceEvent> events() const;
  size_t event_count() const;
  // Drops the events (lanes stay registered).
  void clear();

 private:
  template <typename Args>
  void record_impl(int lane, std::string_view name, Clock::time_point start,
                   Clock::time_point end, const Args& args);

  std::atomic<bool> enabled_{false};
  mutable std::mutex mu_;
  Clock::time_point origin_;
  std::vector<std::string> lanes_;
  std::vector<TraceEvent> events_;
};

// TraceSpan: RAII for a compute event. Construct it where a piece of work starts; it records
// [construction, destruction) on the recorder's compute lane (or `lane`) when the recorder is
// non-null and enabled at construction, else it does nothing (no allocation, no clock read).
//
// The timeline (`tessera trace plot`) colours compute by the name's first word: "F" forward,
// "B" backward-input, "W" backward-weight ("F", or "F attention" for a piece of one); any other
// name is drawn as "other". Args are integers, conventionally micro_batch, chunk, layer:
//
//   void Stage::Forward(int mb, int chunk, ...) {
//     parallel::TraceSpan span(trace_, "F", {{"micro_batch", mb}, {"chunk", chunk}});
//     ...
//   }
//
// Arg keys must outlive the span (string literals do); the name is copied. Spans may nest (a layer inside an F) and
// appear so in the trace. Throws std::invalid_argument (when enabled) for an unregistered lane.
// Not copyable or movable; one thread per span.
class TraceSpan {
 public:
  TraceSpan(TraceRecorder* recorder, std::string_view name,
            std::initializer_list<TraceArg> args = {},
            int lane = TraceRecorder::kComputeLane);
  ~TraceSpan();
  TraceSpan(const TraceSpan&) = delete;
  TraceSpan& operator=(const TraceSpan&) = delete;

 private:
  TraceRecorder* recorder_ = nullptr;  // null: nothing to record
  int lane_ = TraceRecorder::kComputeLane;
  std::string name_;
  std::vector<TraceArg> args_;
  TraceRecorder::Clock::time_point start_;
};

}  // namespace tessera::parallel
