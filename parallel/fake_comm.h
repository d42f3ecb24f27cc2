// FakeComm: N ranks in one process (threads) behind the Comm interface, for unit tests of
// the code above Comm (pipeline executor, dispatcher, ZeRO) without launching MPI.
//
// The ranks of a group share a rendezvous object. Every operation is non-blocking, as with a
// real backend: a collective completes when the last rank of the group posts it (that rank's
// thread moves everybody's data, reducing in rank order, so results are deterministic); a send
// completes when it is matched with a recv and vice versa (never earlier, which is the strict
// reading of MPI, so code that relies on eager sends is caught here).
//
// It is stricter than MPI where MPI would silently misbehave: ranks calling different
// collectives (or different counts, types, ops, roots) at the same sequence number, all_to_all_v
// count mismatches, send/recv count mismatches and inconsistent split groups all fail the Works
// of every rank involved with a message naming both sides. A Work not complete within
// `timeout_s` fails with a timeout naming the operation and its sequence number; a timeout or
// abort_world() then fails every pending and later operation of the whole fake world, so no
// thread stays blocked.
//
// Thread-safety: each FakeComm is one rank; any thread may post on it (see Comm's ordering
// rule). Ranks may be driven by N threads (run_fake_ranks) or, since posting never blocks,
// by a single thread posting on every rank's FakeComm before waiting.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace tessera::parallel {

struct FakeCommOptions {
  // Watchdog for every Work. Default: 30 s.
  double timeout_s = 30.0;
};

namespace fake_detail {
struct World;
struct Group;
struct Post;
struct P2P;
}  // namespace fake_detail

class FakeComm final : public Comm {
 public:
  // The world of n ranks: element i is rank i. REQUIRES: n >= 1.
  static std::vector<std::unique_ptr<FakeComm>> create_world(int n,
                                                             const FakeCommOptions& options = {});
  ~FakeComm() override;

  int rank() const override { return rank_; }
  int size() const override;
  std::unique_ptr<Comm> split(const std::vector<int>& ranks, std::string name = {}) override;

  // Fails every pending and later operation of the whole fake world (all ranks, all groups)
  // with `reason`. Idempotent: the first reason wins.
  void abort_world(const std::string& reason);
  // Declares that this rank will post nothing more (run_fake_ranks calls it when the rank's
  // function returns): operations of its peers that need it fail at once, naming it, instead
  // of waiting for the watchdog.
  void mark_finished();
  // Descriptions of operations posted somewhere in this world that no peer has matched yet.
  std::vector<std::string> unmatched_operations() const;

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
  FakeComm(std::shared_ptr<fake_detail::Group> group, int rank, std::string name);
  Work post_collective(fake_detail::Post post);
  Work post_p2p(fake_detail::P2P op, bool is_send, int peer, int tag);
  std::shared_ptr<WorkState> new_work(std::string description);

  std::shared_ptr<fake_detail::Group> group_;
  int rank_;
};

// Runs fn(comm) on n threads, thread i holding rank i of a fresh fake world. If a rank throws,
// the world is aborted (peers blocked in wait() fail promptly), all threads are joined and the
// first failure is rethrown. After a clean run, an operation some rank posted but no peer
// matched is an error too (std::runtime_error naming it).
void run_fake_ranks(int n, const std::function<void(Comm&)>& fn,
                    const FakeCommOptions& options = {});

}  // namespace tessera::parallel
