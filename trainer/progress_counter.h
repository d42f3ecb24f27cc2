// "<what>: k/n <unit>" lines for long single-process work (export, import): at most one a
// second, and always the last, so a terminal or a log shows movement without a line per item.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace tessera::trainer {

class ProgressCounter {
 public:
  // out: null for silence.
  ProgressCounter(std::ostream* out, std::string what, int64_t total, std::string unit)
      : out_(out), what_(std::move(what)), unit_(std::move(unit)), total_(total) {}

  void advance(int64_t n = 1) {
    done_ += n;
    if (!out_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done_ < total_ && now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    *out_ << what_ << ": " << done_ << "/" << total_ << " " << unit_ << std::endl;
  }

 private:
  std::ostream* out_;
  std::string what_, unit_;
  int64_t total_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace tessera::trainer
