// ActivityBoard: what this process is blocked on or waiting for right now, for liveness checks.
//
// Communicators list every operation from post to completion, and BlockingWatch every blocking
// region (a checkpoint's collective HDF5 I/O). When a peer asks whether this rank is alive
// (PeerCensus), the answer is this board's summary, so a rank that waits for a missing peer can
// say what that peer is doing: "waiting 12.0 s in all_reduce #57 ... on comm 'dp'", or
// "outside communication (nothing outstanding)".
//
// Thread-safety: all members are safe to call concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace tessera::parallel {

class ActivityBoard {
 public:
  using Id = uint64_t;
  // Lists `description` until end(id).
  Id begin(std::string description);
  void end(Id id);
  // The oldest entries first ("waiting 3.2 s in <description>; ..."), cut to at most
  // `max_chars`; "outside communication (nothing outstanding)" when the board is empty.
  std::string summary(size_t max_chars) const;
  size_t size() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string description;
    Clock::time_point since;
  };
  mutable std::mutex mu_;
  Id next_ = 0;
  std::map<Id, Entry> entries_;  // ids grow with time: map order is age order
};

}  // namespace tessera::parallel
