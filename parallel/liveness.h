// Liveness: how a waiting rank tells a slow peer from a stopped or dead one.
//
// A world MpiComm creates one, shared by every communicator split from it and by its
// BlockingWatch. Communications and blocking regions are listed on its ActivityBoard (what this
// rank is doing, for peers that ask); a wait that has stalled for `stall_s` asks the peers it
// waits for (PeerCensus) every `stall_s` after that. A silent peer fails the wait at once,
// naming it; peers that answer are alive, so the wait goes on (up to the operation's hard
// timeout) and, as it grows (2, 4, 8... x stall_s), a line says what they are doing.
//
// Thread-safety: all members are safe to call concurrently.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "parallel/activity_board.h"
#include "parallel/peer_census.h"

namespace tessera::parallel {

class Liveness {
 public:
  // Collective over MPI_COMM_WORLD (the census gathers host names and pids). stall_s <= 0
  // turns liveness checks off; window_s bounds how long a check waits for answers.
  Liveness(double stall_s, double window_s);

  ActivityBoard& board() { return *board_; }
  const std::shared_ptr<ActivityBoard>& shared_board() const { return board_; }
  const PeerCensus& census() const { return *census_; }
  double stall_s() const { return stall_s_; }
  double window_s() const { return window_s_; }

  // Lines about stalled waits go to stderr ("[tessera rank R] ...") and to `sink` once set (the
  // trainer's rank log). `sink` must be callable from any thread; nullptr removes it.
  void set_sink(std::function<void(const std::string&)> sink);
  void log(const std::string& line) const;
  // To the sink only (an error that abort_all is about to print on stderr).
  void log_to_sink(const std::string& line) const;

  // A wait on `what` among `peers` (world ranks) has lasted `waited_s`: asks them. Returns the
  // error text when one is silent; otherwise returns nullopt, after logging what the peers do
  // when waited_s is about 2^k stall_s (k >= 1). Returns nullopt as soon as `resolved` (if
  // given) says the wait is over: a peer that finished and left does not answer either.
  std::optional<std::string> check_stalled(const std::string& what, const std::vector<int>& peers,
                                           double waited_s,
                                           const std::function<bool()>& resolved = {});
  // What `peers` say, for the error of a wait that reached its hard timeout.
  std::string diagnose(const std::vector<int>& peers);

 private:
  const double stall_s_;
  const double window_s_;
  std::shared_ptr<ActivityBoard> board_;
  std::unique_ptr<PeerCensus> census_;
  mutable std::mutex log_mu_;
  std::function<void(const std::string&)> sink_;
};

// "1-3,7,9" for sorted, distinct ranks (at most `max_items` items, then ",... (N ranks)").
std::string format_rank_list(const std::vector<int>& ranks, size_t max_items = 16);

}  // namespace tessera::parallel
