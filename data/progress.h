// Progress reporting for long prepares. On a terminal it redraws one line with a bar, percentage,
// rate and ETA (at most ~10 times a second); elsewhere (logs, pipes) it prints a plain line every
// 5 seconds and one when finished. A null stream makes it silent. Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace tessera::data {

class Progress {
 public:
  Progress(std::ostream* out, bool tty, std::string label, uint64_t total, std::string unit);
  ~Progress();

  void update(uint64_t done);
  // Prints the final state (100% if done == total) and ends the line; idempotent.
  void finish();

 private:
  void draw(bool final);

  std::ostream* out_;
  bool tty_;
  std::string label_;
  uint64_t total_;
  std::string unit_;
  uint64_t done_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "12.3M", "950", "1.2G": a count with a metric suffix, 3 significant digits.
std::string human_count(double value);

}  // namespace tessera::data
