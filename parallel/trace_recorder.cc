#include "parallel/trace_recorder.h"

#include <algorithm>
#include <stdexcept>

namespace tessera::parallel {

TraceRecorder::TraceRecorder() : origin_(Clock::now()), lanes_{"compute"} {}

void TraceRecorder::set_origin(Clock::time_point origin) {
  std::lock_guard<std::mutex> lock(mu_);
  origin_ = origin;
}

int TraceRecorder::lane(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = std::find(lanes_.begin(), lanes_.end(), name);
  if (it != lanes_.end()) return static_cast<int>(it - lanes_.begin());
  lanes_.emplace_back(name);
  return static_cast<int>(lanes_.size()) - 1;
}

int TraceRecorder::lane_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(lanes_.size());
}

std::vector<std::string> TraceRecorder::lanes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lanes_;
}

template <typename Args>
void TraceRecorder::record_impl(int lane, std::string_view name, Clock::time_point start,
                                Clock::time_point end, const Args& args) {
  if (!enabled()) return;
  TraceEvent e;
  e.name = name;
  e.lane = lane;
  e.args.reserve(args.size());
  for (const TraceArg& a : args) e.args.emplace_back(std::string(a.key), a.value);
  using Us = std::chrono::duration<double, std::micro>;
  e.duration_us = std::max(0.0, Us(end - start).count());
  std::lock_guard<std::mutex> lock(mu_);
  if (lane < 0 || static_cast<size_t>(lane) >= lanes_.size()) {
    throw std::logic_error("TraceRecorder::record: lane " + std::to_string(lane) +
                           " was never registered");
  }
  e.start_us = Us(start - origin_).count();
  events_.push_back(std::move(e));
}

void TraceRecorder::record(int lane, std::string_view name, Clock::time_point start,
                           Clock::time_point end, std::initializer_list<TraceArg> args) {
  record_impl(lane, name, start, end, args);
}

void TraceRecorder::record(int lane, std::string_view name, Clock::time_point start,
                           Clock::time_point end, const std::vector<TraceArg>& args) {
  record_impl(lane, name, start, end, args);
}

std::vector<TraceEvent> TraceRecorder::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

size_t TraceRecorder::event_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

void TraceRecorder::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  events_.clear();
}

TraceSpan::TraceSpan(TraceRecorder* recorder, std::string_view name,
                     std::initializer_list<TraceArg> args, int lane) {
  if (recorder == nullptr || !recorder->enabled()) return;
  if (lane < 0 || lane >= recorder->lane_count()) {
    throw std::invalid_argument("TraceSpan '" + std::string(name) + "': lane " +
                                std::to_string(lane) + " was never registered");
  }
  recorder_ = recorder;
  lane_ = lane;
  name_ = name;
  args_.assign(args.begin(), args.end());
  start_ = TraceRecorder::Clock::now();
}

TraceSpan::~TraceSpan() {
  // The lane was checked at construction, so this cannot throw a logic_error.
  if (recorder_ != nullptr) recorder_->record(lane_, name_, start_, TraceRecorder::Clock::now(), args_);
}

}  // namespace tessera::parallel
