#include "parallel/work.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace tessera::parallel {

namespace {
int64_t ns_between(std::chrono::steady_clock::time_point a,
                   std::chrono::steady_clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}
}  // namespace

WorkState::WorkState(Options options) : options_(std::move(options)), posted_at_(Clock::now()) {
  if (options_.counters) options_.counters->posted.fetch_add(1, std::memory_order_relaxed);
}

bool WorkState::complete(std::exception_ptr error) {
  std::vector<std::shared_ptr<const void>> release;  // destroyed outside the lock
  Clock::time_point at = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return false;
    done_ = true;
    error_ = std::move(error);
    completed_at_ = at;
    release.swap(owners_);
    // Counted (and traced) before the lock is released, so a waiter that returns sees its op
    // counted (and its event recorded).
    if (options_.counters) {
      options_.counters->completed.fetch_add(1, std::memory_order_relaxed);
      options_.counters->op_ns.fetch_add(ns_between(posted_at_, at), std::memory_order_relaxed);
    }
    if (trace_.recorder) {
      emit_trace(trace_, at);
      trace_ = {};
    }
  }
  cv_.notify_all();
  return true;
}

void WorkState::trace_to(std::shared_ptr<TraceRecorder> recorder, int lane,
                         std::vector<TraceArg> args) {
  TraceTarget target{std::move(recorder), lane, std::move(args)};
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) {
    emit_trace(target, completed_at_);
  } else {
    trace_ = std::move(target);  // complete() records it
  }
}

void WorkState::emit_trace(const TraceTarget& target, Clock::time_point completed_at) const {
  const std::string& d = options_.description;
  target.recorder->record(target.lane, std::string_view(d).substr(0, d.find(' ')), posted_at_,
                          completed_at, target.args);
}

void WorkState::keep_alive(std::shared_ptr<const void> owner) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) owners_.push_back(std::move(owner));
}

void WorkState::fire_timeout() {
  std::ostringstream msg;
  msg << "communication timeout: " << options_.description << " did not complete within "
      << options_.timeout_s
      << " s (a rank skipped or reordered a collective, or a peer died; "
         "watchdog set by TESSERA_COMM_TIMEOUT_S)";
  if (complete(std::make_exception_ptr(std::runtime_error(msg.str()))) && options_.on_timeout) {
    options_.on_timeout();
  }
}

bool WorkState::test() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return true;
  }
  if (options_.timeout_s > 0 &&
      Clock::now() - posted_at_ > std::chrono::duration<double>(options_.timeout_s)) {
    fire_timeout();
    return true;
  }
  return false;
}

void WorkState::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!done_) {
    const Clock::time_point t0 = Clock::now();
    // A traced wait that blocks is exposed communication: recorded on the compute lane as
    // "wait <op>" (inside the piece that waits), so the timeline shows where compute stalled.
    const std::shared_ptr<TraceRecorder> traced =
        trace_.recorder && trace_.recorder->enabled() ? trace_.recorder : nullptr;
    if (options_.waiter_signal) options_.waiter_signal->waiter_blocked();
    if (options_.timeout_s > 0) {
      const auto deadline = posted_at_ + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options_.timeout_s));
      if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
        lock.unlock();
        fire_timeout();
        lock.lock();
      }
    } else {
      cv_.wait(lock, [this] { return done_; });
    }
    if (options_.waiter_signal) options_.waiter_signal->waiter_unblocked();
    // Blocked until the operation completed: the thread's wake-up latency after that is the
    // scheduler's, not communication, and clamping keeps each wait inside its op's post ->
    // completion span (so wait_seconds <= op_seconds always).
    const Clock::time_point t1 = std::max(t0, std::min(Clock::now(), completed_at_));
    if (options_.counters) {
      options_.counters->waits.fetch_add(1, std::memory_order_relaxed);
      options_.counters->wait_ns.fetch_add(ns_between(t0, t1), std::memory_order_relaxed);
    }
    if (traced) {
      const std::string& d = options_.description;
      traced->record(TraceRecorder::kComputeLane, "wait " + d.substr(0, d.find(' ')), t0, t1);
    }
  }
  if (error_) std::rethrow_exception(error_);
}

bool WorkState::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

double WorkState::elapsed_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) throw std::logic_error("elapsed_seconds() of unfinished " + options_.description);
  return ns_between(posted_at_, completed_at_) * 1e-9;
}

void Work::keep_alive(std::shared_ptr<const void> owner) const {
  if (state_) state_->keep_alive(std::move(owner));
}

const std::string& Work::description() const {
  static const std::string kEmpty = "(empty work)";
  return state_ ? state_->description() : kEmpty;
}

void wait_all(std::span<const Work> works) {
  std::exception_ptr first;
  for (const Work& w : works) {
    try {
      w.wait();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace tessera::parallel
