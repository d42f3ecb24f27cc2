// NcclEngine: what runs behind one NcclComm (nccl_comm.h states the semantics): the NCCL
// communicator, its communication stream, the CUDA events backing the Works, the pending group of
// point-to-point operations, and two threads:
//
//   poller    completes Works when their CUDA event has completed (cudaEventQuery, then
//             ncclCommGetAsyncError), and enqueues the pending point-to-point group when a thread
//             starts blocking in Work::wait(). Completing a Work releases what keep_alive attached,
//             which may block (cudaFree waits for the device), so the poller never aborts anything.
//   watchdog  fails the communicator when an operation passes its deadline, NCCL reports an
//             asynchronous error, or somebody calls request_abort(): ncclCommAbort first (so no
//             kernel writes into buffers any more), then every outstanding Work fails, naming its
//             operation. It never runs user code before the abort.
//
// Internal to parallel/nccl. Thread-safety: every public member may be called from any thread.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "parallel/work.h"

namespace tessera::parallel::nccl_detail {

// A CUDA event destroyed with its last reference (events recorded once, shared by the Works of
// one NCCL group).
using EventPtr = std::shared_ptr<std::remove_pointer_t<cudaEvent_t>>;

// "<ncclGetErrorString> (<ncclGetLastError>)" for result on comm (comm may be null).
std::string nccl_error(ncclResult_t result, ncclComm_t comm);

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  struct Settings {
    int device = 0;
    double timeout_s = 0;        // <= 0: no watchdog deadline
    int poll_interval_us = 50;   // sleep between event polls while nobody waits
    cudaStream_t compute_stream = nullptr;  // nullptr: the legacy default stream
    std::string comm_name;       // for messages
  };
  // Takes ownership of comm (initialized on settings.device). Creates the communication stream
  // and the barrier's scratch word (zero), and starts the threads. Throws std::runtime_error on
  // a CUDA error (comm is then aborted).
  static std::shared_ptr<Engine> start(ncclComm_t comm, const Settings& settings);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Issues the NCCL call(s) of one collective on the communication stream.
  using Launch = std::function<ncclResult_t(ncclComm_t comm, cudaStream_t stream)>;

  // Enqueues the pending point-to-point group, then `launch`, after the compute stream's work
  // posted so far; the Work completes with an event recorded after it. Throws
  // std::runtime_error if the communicator is broken or the launch fails (which breaks it: the
  // ranks' operation sequences no longer agree).
  Work collective(WorkState::Options options, const Launch& launch);
  // Adds a send or receive to the pending group (enqueued later, see nccl_comm.h).
  Work point_to_point(WorkState::Options options, bool is_send, void* data, size_t count,
                      ncclDataType_t type, int peer);
  // Enqueues the pending group now (no-op if empty). Throws std::runtime_error on failure.
  void flush();
  // Makes `stream` wait on the device for `work` (an operation of this engine).
  void stream_wait(const Work& work, cudaStream_t stream);
  // ncclCommSplit after flushing; the new communicator is initialized on the same device.
  ncclComm_t split(int color, int key, const std::string& what);

  // Breaks the communicator; the watchdog aborts it and fails every outstanding Work, naming
  // `reason`. The first reason wins. Returns at once.
  void request_abort(const std::string& reason);
  bool broken() const { return broken_.load(); }
  bool aborted() const;
  // Flushes, waits for outstanding operations (bounded by the watchdog), stops the threads and
  // frees the NCCL communicator (ncclCommDestroy, or nothing after an abort). If an abort does
  // not finish, everything is leaked and a line printed instead of hanging. Never throws.
  void shutdown() noexcept;

  const Settings& settings() const { return settings_; }
  int device() const { return settings_.device; }
  cudaStream_t stream() const { return stream_; }
  float* scratch() const { return scratch_; }
  double timeout_s() const { return timeout_s_.load(); }
  void set_timeout_s(double seconds) { timeout_s_ = seconds; }
  cudaStream_t compute_stream() const { return compute_stream_.load(); }
  void set_compute_stream(cudaStream_t stream) { compute_stream_ = stream; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Op {
    std::shared_ptr<WorkState> work;
    double timeout_s = 0;
    Clock::time_point deadline;
    EventPtr done;  // null until the NCCL call was enqueued; guarded by mu_
  };
  struct PendingP2P {
    std::shared_ptr<Op> op;
    bool is_send = false;
    void* data = nullptr;
    size_t count = 0;
    ncclDataType_t type = ncclFloat32;
    int peer = 0;
    EventPtr ready;  // recorded on the compute stream when the operation was posted
  };
  class WaiterHook;

  Engine(ncclComm_t comm, const Settings& settings);
  std::shared_ptr<Op> make_op(WorkState::Options options);
  void throw_if_broken(const std::string& what) const;
  void add_op(const std::shared_ptr<Op>& op);
  // REQUIRES: post_mu_ held. Throws std::runtime_error (after failing the group's Works).
  void flush_locked();
  // Fails op's Work with "<description>: <message>" and breaks the communicator.
  void fail_and_break(const std::shared_ptr<Op>& op, const std::string& message);
  void waiter_blocked();
  void waiter_unblocked();
  void poller_loop();
  void watchdog_loop();
  void abort_now();

  const Settings settings_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
  float* scratch_ = nullptr;
  std::atomic<double> timeout_s_;
  std::atomic<cudaStream_t> compute_stream_;
  std::atomic<bool> broken_{false};
  std::shared_ptr<WaiterSignal> waiter_hook_;

  // Held while NCCL calls are issued on comm_ (posting order is the collective order).
  std::timed_mutex post_mu_;
  std::vector<PendingP2P> pending_;  // guarded by post_mu_
  // Shared by calls that read comm_'s state (ncclCommGetAsyncError), exclusive for the abort.
  std::shared_mutex comm_mu_;
  bool comm_alive_ = true;  // false once comm_ was aborted or destroyed; guarded by comm_mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Op>> ops_;  // posted, not yet completed
  int waiters_ = 0;                       // threads blocked in Work::wait()
  bool flush_requested_ = false;
  bool stop_ = false;
  bool abort_started_ = false;
  bool aborted_ = false;
  std::string abort_reason_;
  std::shared_ptr<Op> timed_out_;  // the operation whose deadline passed, if that was the reason

  std::thread poller_;
  std::thread watchdog_;
};

}  // namespace tessera::parallel::nccl_detail
