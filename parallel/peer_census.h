// PeerCensus: asks other ranks, on a communicator of its own, whether they are alive and what
// they are waiting for.
//
// A rank that waits in a collective cannot tell a slow peer from a stopped (SIGSTOP), hung or
// dead one: a fixed timeout either fires on slow peers or takes minutes to notice a dead one.
// So every process runs a responder thread that answers queries with its ActivityBoard's
// summary, and a waiting rank asks its peers once its wait stalls: a peer that does not answer
// within the window has every thread stopped (a stopped process's responder is stopped too) or
// is gone, and is named by world rank, host and pid. A peer that answers is alive; its answer
// says what it is doing, which tells a slow peer from a deadlock.
//
// The responder probes for queries every kProbeInterval: a few MPI_Iprobe calls per second, no
// CPU to speak of. Thread-safety: ask() may be called from any thread (calls are serialized).
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/activity_board.h"

namespace tessera::parallel {

class PeerCensus {
 public:
  struct Answer {
    int world_rank = -1;
    bool answered = false;
    std::string state;  // the peer's ActivityBoard summary, when it answered
  };
  static constexpr std::chrono::milliseconds kProbeInterval{20};
  static constexpr size_t kAnswerChars = 1000;

  // Collective over MPI_COMM_WORLD: duplicates it, gathers every rank's host name and pid, and
  // starts the responder. Throws naming the MPI call on failure.
  explicit PeerCensus(std::shared_ptr<const ActivityBoard> board);
  ~PeerCensus();
  PeerCensus(const PeerCensus&) = delete;
  PeerCensus& operator=(const PeerCensus&) = delete;

  // Asks every rank of `world_ranks` but this one, and waits up to `window_s` for their answers,
  // or until `stop_early` (if given) returns true. One Answer per distinct rank asked, in the
  // order given.
  std::vector<Answer> ask(const std::vector<int>& world_ranks, double window_s,
                          const std::function<bool()>& stop_early = {});

  int world_rank() const { return world_rank_; }
  int world_size() const { return static_cast<int>(peers_.size()); }
  // "world rank 3 (host node7, pid 4242)"
  std::string name_rank(int world_rank) const;

 private:
  struct PeerId {
    std::string host;
    int pid = 0;
  };
  struct UnfinishedSend {
    MPI_Request request;
    std::unique_ptr<uint64_t> query;  // the send buffer, alive until the send completes
  };
  void respond_loop();
  void answer(int source);
  void reap_sends();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int world_rank_ = 0;
  std::vector<PeerId> peers_;
  std::shared_ptr<const ActivityBoard> board_;
  std::mutex ask_mu_;  // one census at a time
  uint64_t next_query_ = 1;
  std::vector<UnfinishedSend> unfinished_sends_;  // guarded by ask_mu_
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread responder_;  // last: starts after everything above exists
};

// What a census found, as text for an error or a log line.
struct CensusVerdict {
  std::vector<int> silent;  // world ranks that did not answer
  std::string text;         // silent ranks first, then what the others said (at most 8 lines)
};
CensusVerdict judge_census(const PeerCensus& census, const std::vector<PeerCensus::Answer>& answers,
                           double window_s);

}  // namespace tessera::parallel
