// MpiComm: the Comm interface over MPI non-blocking operations on host buffers.
//
// Every operation posts one MPI non-blocking call (MPI_Iallreduce, MPI_Ireduce_scatter_block,
// MPI_Iallgather, MPI_Ialltoallv, MPI_Isend/MPI_Irecv, MPI_Ibcast, MPI_Ibarrier) and hands the
// request to a progress thread. Open MPI has no asynchronous progress of its own: a
// non-blocking collective only advances inside MPI calls, so without that thread it would
// advance only when the compute thread waits. The progress thread calls MPI_Testsome on every
// outstanding request and completes their Works. With nothing outstanding it sleeps on a
// condition variable (no CPU). With requests outstanding while the caller computes, it polls
// every `poll_interval_us` (so it does not steal a core from compute). A new request or a thread
// starting to block in Work::wait() wakes it at once, and while some thread blocks it polls back
// to back (yielding), since that thread has nothing else to do: the latency of a small operation
// then does not depend on the poll interval (bench/comm_bench measures both).
//
// Communicators carry MPI_ERRORS_RETURN; MPI error codes become exceptions with
// MPI_Error_string. A Work not complete after `timeout_s` fails with an error naming the
// operation and its sequence number (the watchdog). After a timeout the communicator is
// BROKEN: MPI may still write into the posted buffers, later posts throw, and the only safe
// continuation is abort_all().
//
// Thread-safety: as Comm. MPI must be initialized with MPI_THREAD_MULTIPLE (see MpiEnv).
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "parallel/comm.h"

namespace tessera::parallel {

struct MpiCommOptions {
  // Watchdog for every Work; <= 0 disables it.
  // Default: $TESSERA_COMM_TIMEOUT_S if set, else 300 s.
  double timeout_s = default_timeout_s();
  // Sleep between empty MPI_Testsome polls while no thread waits; 0 polls back to back.
  // Default: $TESSERA_COMM_POLL_US if set, else kDefaultPollIntervalUs.
  int poll_interval_us = default_poll_interval_us();

  static constexpr double kDefaultTimeoutS = 300.0;
  // Measured with bench/comm_bench (2 ranks, 2 cores): 8-byte all-reduce latency ~16 us for
  // intervals 10-200 us; hiding behind compute showed no consistent difference across them.
  static constexpr int kDefaultPollIntervalUs = 50;
  // Read the environment; throw std::invalid_argument naming the variable if it is malformed.
  static double default_timeout_s();
  static int default_poll_interval_us();
};

namespace mpi_detail {
class ProgressEngine;
}

class MpiComm final : public Comm {
 public:
  // A duplicate of MPI_COMM_WORLD (so our traffic never matches anybody else's) with a new
  // progress thread. REQUIRES: MPI initialized with MPI_THREAD_MULTIPLE (checked; throws).
  static std::unique_ptr<MpiComm> world(const MpiCommOptions& options = {});
  // Waits (up to the watchdog timeout) for this communicator's outstanding MPI requests, then
  // frees it; a broken communicator with requests still outstanding is leaked instead.
  ~MpiComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // MPI_Comm_split with one color per group; the new communicator shares this one's progress
  // thread and options. Blocking (MPI_Comm_split has no non-blocking form).
  std::unique_ptr<Comm> split(const std::vector<int>& ranks, std::string name = {}) override;

  // The underlying communicator, for MPI-level libraries (parallel HDF5). Do not free it.
  MPI_Comm handle() const { return comm_; }
  bool broken() const { return broken_->load(); }
  // MPI requests of this communicator not yet completed by MPI, including those whose Work a
  // timeout already failed (their buffers are still in use until this drops).
  int in_flight() const { return in_flight_->load(); }
  double timeout_s() const { return timeout_s_.load(); }
  // Applies to operations posted afterwards.
  void set_timeout_s(double seconds) { timeout_s_ = seconds; }

 protected:
  Work post_all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op) override;
  Work post_reduce_scatter(const void* in, void* out, int64_t count_per_rank, DType dtype,
                           ReduceOp op) override;
  Work post_all_gather(const void* in, void* out, int64_t count_per_rank, DType dtype) override;
  Work post_all_to_all_v(const void* in, int64_t in_count, void* out, DType dtype,
                         const AllToAllVOptions& options) override;
  Work post_send(const void* data, int64_t count, DType dtype, int dst, int tag) override;
  Work post_recv(void* data, int64_t count, DType dtype, int src, int tag) override;
  Work post_broadcast(void* data, int64_t count, DType dtype, int root) override;
  Work post_barrier() override;

 private:
  struct Request;
  MpiComm(MPI_Comm comm, std::shared_ptr<mpi_detail::ProgressEngine> engine, std::string name,
          double timeout_s);
  // Creates the Work, runs `post` (which issues the MPI call), hands the request over.
  // REQUIRES: post_mu_ held (posting order is the collective order).
  Work submit(Request request);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::shared_ptr<mpi_detail::ProgressEngine> engine_;
  std::atomic<double> timeout_s_;
  std::shared_ptr<std::atomic<bool>> broken_;
  std::shared_ptr<std::atomic<int>> in_flight_;  // MPI requests not yet completed
  std::mutex post_mu_;
};

}  // namespace tessera::parallel
