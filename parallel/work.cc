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
  next_stall_check_ =
      options_.stall_s > 0 && options_.on_stall
          ? posted_at_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(options_.stall_s))
          : Clock::time_point::max();
}

WorkState::Clock::time_point WorkState::hard_deadline() const {
  if (options_.timeout_s <= 0) return Clock::time_point::max();
  return posted_at_ + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(options_.timeout_s));
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

void WorkState::fire_timeout(const std::string& stall_error) {
  std::ostringstream msg;
  if (!stall_error.empty()) {
    msg << "communication timeout: " << stall_error
        << "\n  (liveness checks every TESSERA_COMM_STALL_S = " << options_.stall_s << " s)";
  } else {
    msg << "communication timeout: " << options_.description << " did not complete within "
        << options_.timeout_s
        << " s (a rank skipped or reordered a collective, or a peer died; "
           "watchdog set by TESSERA_COMM_TIMEOUT_S)";
    if (options_.diagnose) msg << options_.diagnose();
  }
  if (complete(std::make_exception_ptr(std::runtime_error(msg.str()))) && options_.on_timeout) {
    options_.on_timeout();
  }
}

bool WorkState::run_due_stall_check(std::unique_lock<std::mutex>& lock) {
  const Clock::time_point now = Clock::now();
  if (done_ || now < next_stall_check_) return false;
  next_stall_check_ = now + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(options_.stall_s));
  lock.unlock();
  const std::optional<std::string> error =
      options_.on_stall(std::chrono::duration<double>(now - posted_at_).count(),
                        [this] { return done(); });
  if (error) fire_timeout(*error);
  lock.lock();
  return error.has_value();
}

bool WorkState::test() {
  std::unique_lock<std::mutex> lock(mu_);
  if (done_) return true;
  if (Clock::now() >= hard_deadline()) {
    lock.unlock();
    fire_timeout();
    return true;
  }
  return run_due_stall_check(lock) || done_;
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
    const Clock::time_point deadline = hard_deadline();
    while (!done_) {
      const Clock::time_point wake = std::min(deadline, next_stall_check_);
      if (wake == Clock::time_point::max()) {
        cv_.wait(lock, [this] { return done_; });
        break;
      }
      if (cv_.wait_until(lock, wake, [this] { return done_; })) break;
      if (Clock::now() >= deadline) {
        lock.unlock();
        fire_timeout();
        lock.lock();
        break;
      }
      run_due_stall_check(lock);
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
