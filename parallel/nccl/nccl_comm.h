// NcclComm: the Comm interface over NCCL, on DEVICE buffers (DESIGN.md "Communicators").
//
// MPI stays the launcher and the bootstrap; NCCL carries tensors. create() is collective over an
// MPI communicator: rank 0 draws the ncclUniqueId, MPI broadcasts it, every rank selects its CUDA
// device and calls ncclCommInitRank. The communicator keeps a duplicate of that MPI communicator
// for splitting and for the group-rank -> world-rank map used in error messages.
//
// Streams and ordering. Every span passed to the Comm operations must point to device memory
// of device(). Each communicator owns a non-blocking communication stream (stream()). An
// operation is ordered after the work the COMPUTE stream (compute_stream(), set at creation or
// with set_compute_stream; nullptr = the legacy default stream) had been given when the operation
// was posted: a CUDA event recorded on the compute stream at post time, waited on by the
// communication stream. The NCCL call follows, then a completion event, which backs the Work.
// Two ways to consume a result:
//   - stream_wait(work, stream): `stream` waits for the operation on the device; the host does
//     not block (the usual way: consume outputs on the compute stream).
//   - work.wait(): the host blocks until the event completed (and rethrows errors).
// Work::test() never blocks. A poller thread completes Works when their event completed and
// ncclCommGetAsyncError reports no error (completion after a NCCL failure is an error).
//
// Point-to-point. NCCL has no tags: send/recv accept any valid tag and ignore it; sends and
// receives between a pair of ranks match in POSTING ORDER (the n-th send from a to b matches the
// n-th recv on b from a, whatever their tags), so both sides must post them in the same order.
// Code that relies on MPI's tag matching to reorder messages (receive tag 6 before tag 5) does
// not work here. Counts must match exactly (NCCL cannot report a truncation).
// NCCL serializes the operations of one communicator on the device, and a receive occupies the
// device until its send arrives; so, as MPI's non-blocking requests do, sends and receives are
// COLLECTED into a pending group and enqueued together as one ncclGroupStart/ncclGroupEnd, in
// which they progress concurrently (a ring that posts recv then send does not deadlock). The
// pending group is enqueued, in posting order before anything posted later, when:
//   - a collective is posted on this communicator,
//   - a thread starts blocking in Work::wait() on any Work of this communicator,
//   - stream_wait() is called on one of its operations, or flush() is called.
// Work::test() on a send/recv does not enqueue the group: it stays false until one of the above
// happened (call flush() before polling with test()).
// Unlike MPI, the operations of one communicator run one after another on the device in the
// order they were enqueued: a send larger than NCCL's buffers completes only when the peer's
// receive runs. So a rank must not enqueue a collective after a send whose receive the peer
// enqueues only after that collective (nor the converse). Keep point-to-point traffic on its own
// communicator (the pipeline communicator carries only send/recv) or order both sides alike.
//
// Element types: f32, f64, i32, i64, u32. u16 has no NCCL type: posting it throws
// std::invalid_argument. all_to_all_v is one group of ncclSend/ncclRecv per peer (zero counts
// skipped); its in-place form copies the input to a stream-ordered temporary first. barrier() is
// a one-element all-reduce on a device scratch word: its Work completes when every rank reached
// it (observe it with wait()).
//
// Watchdog: every Work gets timeout_s(). When an operation passes its deadline (or NCCL reports
// an asynchronous error, or abort() is called) the communicator is BROKEN: a watchdog thread
// calls ncclCommAbort (which ends the kernels), then fails every outstanding Work with a message
// naming its operation, sequence number and, for send/recv, the peer's world rank, e.g.
//   "communication timeout: recv #2 [f32 x 2 from rank 1 (world rank 3), tag 1] on comm 'pp'
//    (rank 0 of 2) did not complete within 0.5 s; the NCCL communicator was aborted (...)".
// Later posts throw std::runtime_error. NCCL may need the peers on the same node to abort too
// before ncclCommAbort returns (aborted() turns true): after a timeout, end the job
// (abort_all) or call abort() on every rank. Until aborted(), a failed operation's buffers may
// still be written by the device. An abort that interrupts a host-side NCCL call blocked on a
// missing peer (first connection to it) relies on NCCL tolerating ncclCommAbort from another
// thread, as PyTorch's watchdog does.
//
// Statistics: the Comm counters (posted, completed, blocked waits, post -> completion time), as
// MpiComm; the completion time is when the poller observed the event (poll interval bounded).
//
// Thread-safety: as Comm. Any thread may post; the device is selected per call (the caller's
// current device is restored).
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/mpi_comm.h"

namespace tessera::parallel {

struct NcclCommOptions {
  // Watchdog for every Work; <= 0 disables it (a lost peer then hangs forever).
  // Default: $TESSERA_COMM_TIMEOUT_S if set, else 300 s (as MpiComm).
  double timeout_s = MpiCommOptions::default_timeout_s();
  // Sleep between completion polls while no thread waits; 0 polls back to back.
  // Default: $TESSERA_COMM_POLL_US if set, else 50 us (as MpiComm).
  int poll_interval_us = MpiCommOptions::default_poll_interval_us();
  // The stream that produces the inputs; nullptr: the legacy default stream.
  cudaStream_t compute_stream = nullptr;
};

namespace nccl_detail {
class Engine;
}

class NcclComm final : public Comm {
 public:
  // Collective over the ranks of `group` (every rank calls it, with its own device). `device`
  // is this process's CUDA device (typically its node-local rank); each rank of the group needs
  // a device of its own. Blocks until NCCL is initialized on every rank. Throws
  // std::runtime_error on every rank if any rank cannot select its device; if NCCL's own
  // initialization fails on a rank, its peers may block (NCCL has no timeout for it).
  // REQUIRES: MPI initialized (MpiEnv); the NcclComm is destroyed before MPI is finalized.
  // `name` labels the communicator in messages ("nccl" if empty).
  static std::unique_ptr<NcclComm> create(MPI_Comm group, int device, std::string name,
                                          const NcclCommOptions& options = {});
  // The same over an MpiComm's group, named like it by default.
  static std::unique_ptr<NcclComm> create(const MpiComm& group, int device, std::string name = {},
                                          const NcclCommOptions& options = {});
  // Enqueues the pending point-to-point group, waits for outstanding operations (up to the
  // watchdog timeout plus a grace period), then ncclCommDestroy; after an abort only the local
  // resources are freed; if an abort never finishes the communicator is leaked with a message.
  // Never throws.
  ~NcclComm() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // MPI_Comm_split (the group check of MpiComm::split), then ncclCommSplit with one color per
  // group; the new communicator shares the device, compute stream and options, and has its own
  // communication stream and threads. Blocking.
  std::unique_ptr<Comm> split(const std::vector<int>& ranks, std::string name = {}) override;

  // Makes `stream` wait, on the device, for `work` (an operation of this communicator) before
  // its later work runs; the host does not block. Enqueues the pending point-to-point group if
  // `work` is in it. A completed Work needs no wait (its error, if any, is rethrown). Throws
  // std::invalid_argument if `work` is pending but not this communicator's. If the operation
  // fails later, the stream still proceeds (over unspecified data): check the Work.
  void stream_wait(const Work& work, cudaStream_t stream);
  // Enqueues the pending point-to-point group now. Throws std::runtime_error if NCCL rejects it.
  void flush();

  // Breaks the communicator: the watchdog thread aborts it (ncclCommAbort) and fails every
  // outstanding Work naming `reason`; returns at once. No-op once broken.
  void abort(const std::string& reason);
  bool broken() const;
  // True once ncclCommAbort returned.
  bool aborted() const;

  int device() const;
  cudaStream_t stream() const;  // the communication stream
  cudaStream_t compute_stream() const;
  // Applies to operations posted afterwards.
  void set_compute_stream(cudaStream_t stream);
  double timeout_s() const;
  // Applies to operations posted afterwards.
  void set_timeout_s(double seconds);
  // MPI_COMM_WORLD rank of this communicator's rank `group_rank`.
  int world_rank(int group_rank) const { return world_ranks_.at(group_rank); }

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
  // Takes ownership of mpi_comm and of engine's NCCL communicator.
  NcclComm(MPI_Comm mpi_comm, std::shared_ptr<nccl_detail::Engine> engine, std::string name);
  std::string peer_detail(const char* direction, int peer) const;

  MPI_Comm mpi_comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;  // group rank -> MPI_COMM_WORLD rank
  std::shared_ptr<nccl_detail::Engine> engine_;
  // Held while a sequence number is drawn and the operation posted, so that numbering follows
  // posting order.
  std::mutex post_mu_;
};

}  // namespace tessera::parallel
