#include "parallel/nccl/nccl_engine.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <sstream>
#include <stdexcept>

#include "kernels/cuda/device.h"
#include "parallel/nccl/device_guard.h"

namespace tessera::parallel::nccl_detail {

namespace {

// How often the watchdog asks NCCL for asynchronous errors while operations are outstanding.
constexpr std::chrono::milliseconds kAsyncErrorPeriod{100};
// How long an abort waits for a poster to leave its NCCL call before aborting under it.
constexpr std::chrono::seconds kAbortLockWait{1};
// Extra time shutdown() grants beyond the watchdog timeout before it gives up and leaks.
constexpr double kShutdownGraceS = 30.0;
// Pause before the poller retries a flush while a poster holds the posting lock.
constexpr std::chrono::microseconds kMinFlushRetry{20};

// A new event recorded on stream now.
EventPtr record_event(cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  EventPtr owned(event, [](cudaEvent_t e) { cudaEventDestroy(e); });
  TESSERA_CUDA_CHECK(cudaEventRecord(event, stream));
  return owned;
}

std::exception_ptr error_of(const std::string& message) {
  return std::make_exception_ptr(std::runtime_error(message));
}

}  // namespace

std::string nccl_error(ncclResult_t result, ncclComm_t comm) {
  std::string s = ncclGetErrorString(result);
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += std::string(" (") + last + ")";
  return s;
}

// The WaiterSignal of this engine's Works; a Work may outlive the engine.
class Engine::WaiterHook : public WaiterSignal {
 public:
  explicit WaiterHook(std::weak_ptr<Engine> engine) : engine_(std::move(engine)) {}
  void waiter_blocked() override {
    if (auto e = engine_.lock()) e->waiter_blocked();
  }
  void waiter_unblocked() override {
    if (auto e = engine_.lock()) e->waiter_unblocked();
  }

 private:
  std::weak_ptr<Engine> engine_;
};

Engine::Engine(ncclComm_t comm, const Settings& settings)
    : settings_(settings),
      comm_(comm),
      timeout_s_(settings.timeout_s),
      compute_stream_(settings.compute_stream) {
  try {
    DeviceGuard guard(settings_.device);
    TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    TESSERA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float)));
    TESSERA_CUDA_CHECK(cudaMemsetAsync(scratch_, 0, sizeof(float), stream_));  // before any use
  } catch (...) {
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
    ncclCommAbort(comm_);  // not destroy: it may wait for peers
    throw;
  }
}

std::shared_ptr<Engine> Engine::start(ncclComm_t comm, const Settings& settings) {
  std::shared_ptr<Engine> engine(new Engine(comm, settings));
  engine->waiter_hook_ = std::make_shared<WaiterHook>(engine);
  // The threads own a reference until they return (shutdown() stops them).
  engine->poller_ = std::thread([engine] { engine->poller_loop(); });
  engine->watchdog_ = std::thread([engine] { engine->watchdog_loop(); });
  return engine;
}

// Resources are released by shutdown(); an engine leaked by it is never destroyed.
Engine::~Engine() = default;

bool Engine::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

void Engine::request_abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_reason_.empty()) abort_reason_ = reason;
    broken_ = true;
  }
  cv_.notify_all();
}

void Engine::throw_if_broken(const std::string& what) const {
  if (!broken()) return;
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reason = abort_reason_;
  }
  throw std::runtime_error("cannot post " + what + ": NCCL communicator '" + settings_.comm_name +
                           "' is broken (" + reason + ")");
}

std::shared_ptr<Engine::Op> Engine::make_op(WorkState::Options options) {
  auto op = std::make_shared<Op>();
  op->timeout_s = timeout_s();
  op->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(std::max(op->timeout_s, 0.0)));
  options.timeout_s = op->timeout_s;
  // A waiter whose deadline passes fails the Work itself; the communicator must then abort too.
  options.on_timeout = [weak = weak_from_this(), what = options.description] {
    if (auto e = weak.lock()) e->request_abort("communication timeout of " + what);
  };
  options.waiter_signal = waiter_hook_;
  op->work = std::make_shared<WorkState>(std::move(options));
  return op;
}

void Engine::add_op(const std::shared_ptr<Op>& op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.push_back(op);
  }
  cv_.notify_all();
}

void Engine::fail_and_break(const std::shared_ptr<Op>& op, const std::string& message) {
  const std::string what = op->work->description() + ": " + message;
  request_abort(what);
  op->work->complete(error_of(what));
}

Work Engine::collective(WorkState::Options options, const Launch& launch) {
  // Checked before taking post_mu_ too: an abort in progress may hold it while NCCL waits for
  // the peers to abort, which they may do only after this rank moved on.
  throw_if_broken(options.description);
  std::lock_guard<std::timed_mutex> post(post_mu_);
  throw_if_broken(options.description);
  std::shared_ptr<Op> op = make_op(std::move(options));
  try {
    DeviceGuard guard(settings_.device);
    flush_locked();  // point-to-point operations posted earlier go first
    const EventPtr ready = record_event(compute_stream());
    TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready.get(), 0));
    add_op(op);  // from here the watchdog covers a launch that blocks on the host
    const ncclResult_t result = launch(comm_, stream_);
    if (result != ncclSuccess) throw std::runtime_error(nccl_error(result, comm_));
    EventPtr done = record_event(stream_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      op->done = std::move(done);
    }
    cv_.notify_all();
  } catch (const std::exception& e) {
    // This rank did not enqueue an operation its peers did: the communicator cannot continue.
    fail_and_break(op, e.what());
    op->work->wait();  // rethrows that error, or the watchdog's if it came first
  }
  return Work(op->work);
}

Work Engine::point_to_point(WorkState::Options options, bool is_send, void* data, size_t count,
                            ncclDataType_t type, int peer) {
  throw_if_broken(options.description);  // before post_mu_: see collective()
  std::lock_guard<std::timed_mutex> post(post_mu_);
  throw_if_broken(options.description);
  std::shared_ptr<Op> op = make_op(std::move(options));
  try {
    DeviceGuard guard(settings_.device);
    pending_.push_back({op, is_send, data, count, type, peer, record_event(compute_stream())});
    add_op(op);
  } catch (const std::exception& e) {
    fail_and_break(op, e.what());
    op->work->wait();  // rethrows
  }
  return Work(op->work);
}

void Engine::flush() {
  if (broken()) return;  // the abort fails the pending Works; post_mu_ may be held by it
  std::lock_guard<std::timed_mutex> post(post_mu_);
  flush_locked();
}

void Engine::flush_locked() {
  if (pending_.empty()) return;
  std::vector<PendingP2P> batch;
  batch.swap(pending_);
  if (broken()) return;  // the abort fails their Works
  try {
    DeviceGuard guard(settings_.device);
    for (const PendingP2P& p : batch) {
      TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream_, p.ready.get(), 0));
    }
    // One group: its sends and receives progress concurrently, in any order of matching.
    ncclResult_t result = ncclGroupStart();
    if (result == ncclSuccess) {
      for (const PendingP2P& p : batch) {
        if (p.count == 0) continue;  // the matching operation has count 0 too
        result = p.is_send ? ncclSend(p.data, p.count, p.type, p.peer, comm_, stream_)
                           : ncclRecv(p.data, p.count, p.type, p.peer, comm_, stream_);
        if (result != ncclSuccess) break;
      }
      const ncclResult_t end = ncclGroupEnd();
      if (result == ncclSuccess) result = end;
    }
    if (result != ncclSuccess) {
      throw std::runtime_error("enqueueing the point-to-point group: " +
                               nccl_error(result, comm_));
    }
    EventPtr done = record_event(stream_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const PendingP2P& p : batch) p.op->done = done;
    }
    cv_.notify_all();
  } catch (const std::exception& e) {
    for (const PendingP2P& p : batch) fail_and_break(p.op, e.what());
    throw;
  }
}

void Engine::stream_wait(const Work& work, cudaStream_t stream) {
  if (work.test()) {
    work.wait();  // complete: nothing to order after; rethrows its error
    return;
  }
  EventPtr done;
  if (!broken()) {  // broken: the abort (or the Work's own deadline) fails it
    std::lock_guard<std::timed_mutex> post(post_mu_);
    std::shared_ptr<Op> op;
    {
      // A Work's description() is a reference into its WorkState: its address identifies it.
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& o : ops_) {
        if (&o->work->description() == &work.description()) {
          op = o;
          done = o->done;
          break;
        }
      }
    }
    if (!op && !work.test()) {
      throw std::invalid_argument("stream_wait: " + work.description() +
                                  " is not an outstanding operation of NCCL communicator '" +
                                  settings_.comm_name + "'");
    }
    if (op && !done) {
      flush_locked();  // it sits in the pending group
      std::lock_guard<std::mutex> lock(mu_);
      done = op->done;
    }
  }
  if (!done) {
    work.wait();  // completed meanwhile, or failed before it was enqueued: rethrows any error
    return;
  }
  DeviceGuard guard(settings_.device);
  TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream, done.get(), 0));
}

ncclComm_t Engine::split(int color, int key, const std::string& what) {
  throw_if_broken(what);  // before post_mu_: see collective()
  std::lock_guard<std::timed_mutex> post(post_mu_);
  throw_if_broken(what);
  flush_locked();
  DeviceGuard guard(settings_.device);
  ncclComm_t sub = nullptr;
  const ncclResult_t result = ncclCommSplit(comm_, color, key, &sub, nullptr);
  if (result != ncclSuccess) {
    throw std::runtime_error(what + ": ncclCommSplit: " + nccl_error(result, comm_));
  }
  return sub;
}

void Engine::waiter_blocked() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++waiters_;
    flush_requested_ = true;  // the awaited operation may still sit in the pending group
  }
  cv_.notify_all();
}

void Engine::waiter_unblocked() {
  std::lock_guard<std::mutex> lock(mu_);
  --waiters_;
}

void Engine::poller_loop() {
  cudaSetDevice(settings_.device);
  const std::chrono::microseconds poll_interval(settings_.poll_interval_us);
  std::vector<std::pair<std::shared_ptr<Op>, EventPtr>> snapshot;
  std::vector<std::shared_ptr<Op>> finished;
  bool progressed = true;
  for (;;) {
    bool flush = false, spin = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (ops_.empty()) {
        // Idle: no CPU at all until something is posted.
        cv_.wait(lock, [&] { return stop_ || flush_requested_ || !ops_.empty(); });
      } else if (!progressed && waiters_ == 0 && poll_interval.count() > 0) {
        // Operations run while the caller computes: poll every interval, but wake at once for
        // a new operation or a caller starting to wait.
        cv_.wait_for(lock, poll_interval, [&] { return stop_ || flush_requested_ || waiters_ > 0; });
      }
      if (stop_) return;
      if (broken_) flush_requested_ = false;  // nothing more is enqueued; the abort fails them
      flush = flush_requested_;
      spin = waiters_ > 0 || poll_interval.count() == 0;
      snapshot.clear();
      for (const auto& op : ops_) snapshot.emplace_back(op, op->done);
    }
    bool flush_deferred = false;
    if (flush) {
      std::unique_lock<std::timed_mutex> post(post_mu_, std::try_to_lock);
      if (post.owns_lock()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          flush_requested_ = false;
        }
        try {
          flush_locked();
        } catch (const std::exception&) {
          // The group's Works carry the error.
        }
        progressed = true;
        continue;  // poll again with the new events
      }
      // A poster holds the lock (and flushes itself if it posts a collective): retry shortly.
      flush_deferred = true;
    }
    progressed = false;
    finished.clear();
    for (auto& [op, done] : snapshot) {
      if (op->work->done()) {  // failed by a timeout in wait()
        finished.push_back(op);
        continue;
      }
      if (!done) continue;  // still in the pending group
      const cudaError_t status = cudaEventQuery(done.get());
      if (status == cudaErrorNotReady) continue;
      std::string error;
      if (status != cudaSuccess) {
        cudaGetLastError();  // clear it where it is not sticky
        error = std::string("CUDA error while it ran: ") + cudaGetErrorName(status) + ": " +
                cudaGetErrorString(status);
      } else {
        // NCCL kernels also end on a network error: the event alone does not mean success.
        std::shared_lock<std::shared_mutex> comm_lock(comm_mu_);
        if (!comm_alive_) continue;  // aborted: the watchdog fails it
        ncclResult_t async = ncclSuccess;
        const ncclResult_t result = ncclCommGetAsyncError(comm_, &async);
        if (result != ncclSuccess) {
          error = "ncclCommGetAsyncError: " + nccl_error(result, comm_);
        } else if (async != ncclSuccess && async != ncclInProgress) {
          error = "NCCL asynchronous error: " + nccl_error(async, comm_);
        }
      }
      if (error.empty()) {
        op->work->complete();
      } else {
        fail_and_break(op, error);
      }
      finished.push_back(op);
    }
    if (!finished.empty()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        std::erase_if(ops_, [&](const std::shared_ptr<Op>& op) {
          return std::find(finished.begin(), finished.end(), op) != finished.end();
        });
      }
      cv_.notify_all();  // shutdown() waits for ops_ to drain
      progressed = true;
    } else if (flush_deferred) {
      std::this_thread::sleep_for(std::max(poll_interval, kMinFlushRetry));
    } else if (spin) {
      std::this_thread::yield();  // somebody waits: poll back to back, but share the core
    }
  }
}

void Engine::watchdog_loop() {
  cudaSetDevice(settings_.device);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stop_) return;
    if (abort_started_) {
      cv_.wait(lock, [&] { return stop_; });  // nothing left to watch
      continue;
    }
    if (!abort_reason_.empty()) {
      abort_started_ = true;
      lock.unlock();
      abort_now();
      lock.lock();
      continue;
    }
    const auto now = Clock::now();
    auto next = now + kAsyncErrorPeriod;
    std::vector<std::shared_ptr<Op>> late;
    for (const auto& op : ops_) {
      if (op->timeout_s <= 0) continue;
      if (op->deadline <= now) {
        late.push_back(op);
      } else {
        next = std::min(next, op->deadline);
      }
    }
    if (!late.empty()) {
      lock.unlock();
      // A Work completed right at its deadline may not have been removed yet.
      std::shared_ptr<Op> first;
      for (const auto& op : late) {
        if (!op->work->done()) {
          first = op;
          break;
        }
      }
      lock.lock();
      if (first) {
        if (abort_reason_.empty()) {
          std::ostringstream msg;
          msg << "communication timeout: " << first->work->description()
              << " did not complete within " << first->timeout_s
              << " s; the NCCL communicator was aborted (a rank skipped or reordered an "
                 "operation, or a peer died; watchdog set by TESSERA_COMM_TIMEOUT_S)";
          abort_reason_ = msg.str();
          timed_out_ = first;
          broken_ = true;
        }
        continue;
      }
      next = std::min(next, Clock::now() + std::chrono::milliseconds(1));
    } else if (!ops_.empty()) {
      lock.unlock();
      ncclResult_t result = ncclSuccess, async = ncclSuccess;
      {
        std::shared_lock<std::shared_mutex> comm_lock(comm_mu_);
        if (comm_alive_) result = ncclCommGetAsyncError(comm_, &async);
      }
      lock.lock();
      if (result != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
        if (abort_reason_.empty()) {
          abort_reason_ = "NCCL asynchronous error on comm '" + settings_.comm_name +
                          "': " + nccl_error(result != ncclSuccess ? result : async, comm_);
          broken_ = true;
        }
        continue;
      }
    }
    cv_.wait_until(lock, next,
                   [&] { return stop_ || (!abort_reason_.empty() && !abort_started_); });
  }
}

void Engine::abort_now() {
  {
    // A poster blocked inside an NCCL call keeps post_mu_: abort anyway, which unblocks it.
    std::unique_lock<std::timed_mutex> post(post_mu_, std::defer_lock);
    (void)post.try_lock_for(kAbortLockWait);
    ncclResult_t result;
    {
      std::unique_lock<std::shared_mutex> comm_lock(comm_mu_);
      result = ncclCommAbort(comm_);
      comm_alive_ = false;
    }
    if (result != ncclSuccess) {
      std::fprintf(stderr, "tessera: ncclCommAbort of comm '%s' failed: %s\n",
                   settings_.comm_name.c_str(), nccl_error(result, nullptr).c_str());
    }
    if (post.owns_lock()) pending_.clear();
  }
  // The kernels have stopped: only now release the Works' buffers (cudaFree would otherwise
  // wait for a kernel that never ends).
  std::vector<std::shared_ptr<Op>> ops;
  std::string reason;
  std::shared_ptr<Op> timed_out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ops.swap(ops_);
    reason = abort_reason_;
    timed_out.swap(timed_out_);
    aborted_ = true;
  }
  for (const auto& op : ops) {
    op->work->complete(error_of(op == timed_out ? reason
                                                : op->work->description() +
                                                      ": failed, the NCCL communicator was "
                                                      "aborted (" + reason + ")"));
  }
  cv_.notify_all();
}

void Engine::shutdown() noexcept {
  try {
    flush();  // peers may be waiting for these
  } catch (const std::exception&) {
    // Their Works carry the error.
  }
  const double timeout = timeout_s();
  bool settled = true;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto quiet = [&] { return ops_.empty() && (abort_reason_.empty() || aborted_); };
    if (timeout > 0) {
      settled = cv_.wait_for(lock, std::chrono::duration<double>(timeout + kShutdownGraceS), quiet);
    } else {
      cv_.wait(lock, quiet);
    }
    stop_ = true;
  }
  cv_.notify_all();
  if (!settled) {
    std::fprintf(stderr,
                 "tessera: NCCL communicator '%s' destroyed with operations outstanding or its "
                 "abort unfinished; leaking it\n",
                 settings_.comm_name.c_str());
    poller_.detach();
    watchdog_.detach();
    return;
  }
  poller_.join();
  watchdog_.join();
  try {
    DeviceGuard guard(settings_.device);
    if (comm_alive_) {
      const ncclResult_t result = ncclCommDestroy(comm_);
      if (result != ncclSuccess) {
        std::fprintf(stderr, "tessera: ncclCommDestroy of comm '%s' failed: %s\n",
                     settings_.comm_name.c_str(), nccl_error(result, nullptr).c_str());
      }
      comm_alive_ = false;
    }
    cudaFree(scratch_);
    cudaStreamDestroy(stream_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: releasing NCCL communicator '%s': %s\n",
                 settings_.comm_name.c_str(), e.what());
  }
}

}  // namespace tessera::parallel::nccl_detail
