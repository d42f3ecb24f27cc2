// MpiComm: the Comm interface over MPI non-blocking operations on host buffers.
//
// Every operation posts one MPI non-blocking call (MPI_Iallreduce, MPI_Iallgather,
// MPI_Ialltoallv (also under reduce_scatter, see post_reduce_scatter), MPI_Isend/MPI_Irecv,
// MPI_Ibcast, MPI_Ibarrier) and hands the request to a progress thread. Open MPI has no
// asynchronous progress of its own: a non-blocking collective only advances inside MPI calls,
// so without that thread it would advance only when the compute thread waits. The progress
// thread calls MPI_Testsome on every outstanding request and completes their Works. With
// nothing outstanding it sleeps on a condition variable (no CPU). With requests outstanding
// while the caller computes, it polls every `poll_interval_us` after a post or a completion
// and doubles the sleep (up to 1 ms) after each poll that completed nothing, so it does not
// steal a core from compute: a pipeline's receive posted long before its sender sends costs
// ~1k wake-ups a second, not 20k. (All-reduce, all-gather, broadcast and barrier advance a
// round per progress call: while one is pending the interval stays as set.) A new request or a
// thread starting to block in Work::wait() wakes it at once, and while some thread blocks it
// polls back to back (yielding), since that thread has nothing else to do: the latency of a
// small operation then does not depend on the poll interval (bench/comm_bench measures both).
//
// A waiting rank backs off: after 2 ms of back-to-back polls the progress thread sleeps between
// polls (doubling up to 1 ms), so a rank that waits long for a slow or stopped peer costs
// next to no CPU.
//
// Communicators carry MPI_ERRORS_RETURN; MPI error codes become exceptions with
// MPI_Error_string. Two limits bound every Work (parallel/liveness.h): once it has been pending
// `stall_s`, and every stall_s after that, it asks the peers it waits for whether they are
// alive, and a peer that does not answer fails it at once, named by world rank, host and pid
// (a stopped, hung or dead process); peers that answer are alive, so the wait goes on until the
// watchdog `timeout_s`, whose error says what each peer was doing. Either error names the
// operation, its sequence number and its communicator's world ranks. After one the
// communicator is BROKEN: MPI may still write into the posted buffers, later posts throw, and
// the only safe continuation is abort_all().
//
// Thread-safety: as Comm. MPI must be initialized with MPI_THREAD_MULTIPLE (see MpiEnv).
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace tessera::parallel {

struct MpiCommOptions {
  // Watchdog for every Work; <= 0 disables it.
  // Default: $TESSERA_COMM_TIMEOUT_S if set, else 300 s.
  double timeout_s = default_timeout_s();
  // Liveness checks of a Work's peers after it has been pending this long, and again every
  // stall_s; <= 0 disables them. Default: $TESSERA_COMM_STALL_S if set, else 10 s.
  double stall_s = default_stall_s();
  // How long a liveness check waits for answers before naming the silent peers.
  double liveness_window_s = kDefaultLivenessWindowS;
  // Sleep after a post or a completion between MPI_Testsome polls while no thread waits (it
  // doubles, up to 1 ms, while polls complete nothing); 0 polls back to back.
  // Default: $TESSERA_COMM_POLL_US if set, else kDefaultPollIntervalUs.
  int poll_interval_us = default_poll_interval_us();

  static constexpr double kDefaultTimeoutS = 300.0;
  static constexpr double kDefaultStallS = 10.0;
  // Answers come from a thread that probes every 20 ms; 5 s leaves room for a loaded machine.
  static constexpr double kDefaultLivenessWindowS = 5.0;
  // Measured with bench/comm_bench (2 ranks, 2 cores): 8-byte all-reduce latency ~16 us for
  // intervals 10-200 us; hiding behind compute showed no consistent difference across them.
  static constexpr int kDefaultPollIntervalUs = 50;
  // Read the environment; throw std::invalid_argument naming the variable if it is malformed.
  static double default_timeout_s();
  static double default_stall_s();
  static int default_poll_interval_us();
};

namespace mpi_detail {
class ProgressEngine;
}
class BlockingWatch;
class Liveness;

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
  // The world rank of this communicator's rank `rank`.
  int world_rank(int rank) const { return world_ranks_.at(static_cast<size_t>(rank)); }
  // "on comm 'dp' (rank 1 of 4, world ranks 0,2,4,6)"
  std::string where() const override;

  // Shared by the world communicator and every one split from it.
  Liveness& liveness() const { return *liveness_; }
  // Bounds blocking calls no Work covers (collective HDF5 I/O): see parallel/blocking_watch.h.
  const std::shared_ptr<BlockingWatch>& blocking_watch() const { return blocking_watch_; }

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
          double timeout_s, std::shared_ptr<Liveness> liveness,
          std::shared_ptr<BlockingWatch> blocking_watch);
  // Creates the Work, runs `post` (which issues the MPI call), hands the request over.
  // REQUIRES: post_mu_ held (posting order is the collective order).
  // `peers`: the world ranks the operation waits for (liveness checks ask them).
  Work submit(Request request, std::vector<int> peers);
  // Every member but this rank, as world ranks (what a collective waits for).
  std::vector<int> other_members() const;
  // " (world rank W)" of communicator rank `rank`, for point-to-point descriptions.
  std::string peer_detail(int rank) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::shared_ptr<mpi_detail::ProgressEngine> engine_;
  std::shared_ptr<Liveness> liveness_;
  std::shared_ptr<BlockingWatch> blocking_watch_;
  std::vector<int> world_ranks_;  // member -> world rank
  std::atomic<double> timeout_s_;
  std::shared_ptr<std::atomic<bool>> broken_;
  std::shared_ptr<std::atomic<int>> in_flight_;  // MPI requests not yet completed
  std::mutex post_mu_;
};

// The MPI communicator under `comm`, for MPI-level libraries (parallel HDF5). Throws
// std::logic_error saying that `user` needs MPI when comm is no MpiComm (a fake or NCCL one).
MPI_Comm mpi_handle(const Comm& comm, const std::string& user);

}  // namespace tessera::parallel
