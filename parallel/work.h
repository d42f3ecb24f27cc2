// Work: the handle every Comm operation returns, as in PyTorch c10d.
//
// A Work is a shared handle on one posted operation. `test()` never blocks; `wait()` blocks
// until the operation finished and rethrows its error. A Work created with a timeout turns a
// hang into an error naming the operation and its sequence number (the watchdog): `wait()`
// throws once the deadline passes, and `test()` past the deadline completes it with that error.
// Before that deadline, liveness checks (Options::on_stall) can fail it early when a peer it
// waits for is stopped or dead (parallel/liveness.h).
//
// Backends create a WorkState per operation, keep it until the operation completes, and call
// `complete()` exactly once from any thread (later calls are ignored, so a watchdog timeout and
// a late MPI completion can race safely). Buffers and anything attached with `keep_alive()`
// stay owned by the Work until completion, then are released on the completing thread.
//
// Thread-safety: all members are safe to call concurrently from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "parallel/trace_recorder.h"

namespace tessera::parallel {

// Counters a communicator shares with the Works it creates; lock-free.
struct CommCounters {
  std::atomic<int64_t> posted{0};
  std::atomic<int64_t> completed{0};
  std::atomic<int64_t> waits{0};    // wait() calls that found the Work not yet complete
  std::atomic<int64_t> wait_ns{0};  // time callers spent blocked in wait() until completion
  std::atomic<int64_t> op_ns{0};    // sum over ops of post -> completion time
};

// Told when a thread starts and stops blocking in Work::wait(), so that a progress thread can
// poll at full speed while somebody waits (and sleep between polls while nobody does).
class WaiterSignal {
 public:
  virtual ~WaiterSignal() = default;
  virtual void waiter_blocked() = 0;
  virtual void waiter_unblocked() = 0;
};

// A snapshot of CommCounters. Exposed communication fraction = wait_seconds / op_seconds
// (op_seconds double-counts operations that overlap each other).
struct CommStats {
  int64_t ops_posted = 0;
  int64_t ops_completed = 0;
  int64_t blocked_waits = 0;
  double wait_seconds = 0;
  double op_seconds = 0;
};

class WorkState {
 public:
  struct Options {
    std::string description;                 // "all_reduce #3 [f32 x 1024, sum] on comm 'dp' ..."
    std::shared_ptr<CommCounters> counters;  // may be null
    double timeout_s = 0;                    // <= 0: no watchdog
    std::function<void()> on_timeout;        // run once by the thread that detects the timeout
    std::shared_ptr<WaiterSignal> waiter_signal;  // may be null
    // Liveness checks: once the operation has been pending `stall_s` (and every stall_s after
    // that), a thread in wait() or test() runs `on_stall(pending seconds, done)`, without
    // locks (`done` says whether the operation has completed meanwhile). It returns the error
    // to fail with now (a peer is silent), or nullopt to keep waiting.
    double stall_s = 0;  // <= 0 or no on_stall: no checks
    std::function<std::optional<std::string>(double, const std::function<bool()>&)> on_stall;
    // Appended to the watchdog timeout's message (what the peers said); may be empty.
    std::function<std::string()> diagnose;
  };
  explicit WorkState(Options options);
  WorkState(const WorkState&) = delete;
  WorkState& operator=(const WorkState&) = delete;

  // Marks the operation finished (error == nullptr: success). Returns false if it already was.
  bool complete(std::exception_ptr error = nullptr);
  // Keeps `owner` alive until completion (released at once if already complete).
  void keep_alive(std::shared_ptr<const void> owner);

  bool test();
  void wait();
  bool done() const;
  const std::string& description() const { return options_.description; }
  // Post -> completion time. REQUIRES: done().
  double elapsed_seconds() const;
  // Records post -> completion on `lane` of `recorder` (if enabled then), named after the
  // description's first word ("all_to_all_v"), once the operation completes, or at once if it
  // already has. Arg keys must be string literals. Comm calls it right after posting. A wait()
  // that blocks meanwhile is recorded too, as "wait <op>" on the compute lane (exposed
  // communication, on the thread that waited).
  void trace_to(std::shared_ptr<TraceRecorder> recorder, int lane, std::vector<TraceArg> args);

 private:
  using Clock = std::chrono::steady_clock;
  struct TraceTarget {
    std::shared_ptr<TraceRecorder> recorder;  // null: not traced
    int lane = 0;
    std::vector<TraceArg> args;
  };
  // Fails the operation with a "communication timeout" error: after the watchdog timeout
  // (stall_error empty) or with what a liveness check found.
  void fire_timeout(const std::string& stall_error = {});
  // The stall check due now, if any (claimed under mu_, so one thread runs it); runs it without
  // the lock. Returns true if it failed the operation. REQUIRES: lock holds mu_.
  bool run_due_stall_check(std::unique_lock<std::mutex>& lock);
  Clock::time_point hard_deadline() const;
  // REQUIRES: mu_ held (the recorder's own lock nests inside it; it never calls back).
  void emit_trace(const TraceTarget& target, Clock::time_point completed_at) const;

  const Options options_;
  const Clock::time_point posted_at_;
  mutable std::mutex mu_;
  Clock::time_point next_stall_check_;  // max(): none
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  Clock::time_point completed_at_;
  std::vector<std::shared_ptr<const void>> owners_;
  TraceTarget trace_;
};

class Work {
 public:
  Work() = default;  // an empty Work is complete and successful
  explicit Work(std::shared_ptr<WorkState> state) : state_(std::move(state)) {}

  // True once the operation finished, successfully or not (wait() then reports which).
  // Never blocks.
  bool test() const { return !state_ || state_->test(); }
  // Blocks until the operation finished; rethrows its error (including a watchdog timeout).
  void wait() const {
    if (state_) state_->wait();
  }
  // Keeps `owner` alive until the operation completes, e.g. the tensor whose span was posted.
  void keep_alive(std::shared_ptr<const void> owner) const;
  const std::string& description() const;
  // Post -> completion time as seen by the backend. REQUIRES: test() is true.
  double elapsed_seconds() const { return state_ ? state_->elapsed_seconds() : 0.0; }
  bool defined() const { return state_ != nullptr; }

 private:
  friend class Comm;  // attaches the communicator's trace recorder after posting
  std::shared_ptr<WorkState> state_;
};

// Waits for every Work (all of them, even after a failure), then rethrows the first error.
void wait_all(std::span<const Work> works);

}  // namespace tessera::parallel
