#include "parallel/liveness.h"

#include <mpi.h>

#include <cmath>
#include <cstdio>

namespace tessera::parallel {

Liveness::Liveness(double stall_s, double window_s)
    : stall_s_(stall_s),
      window_s_(window_s),
      board_(std::make_shared<ActivityBoard>()),
      census_(std::make_unique<PeerCensus>(board_)) {}

void Liveness::set_sink(std::function<void(const std::string&)> sink) {
  std::lock_guard<std::mutex> lock(log_mu_);
  sink_ = std::move(sink);
}

void Liveness::log(const std::string& line) const {
  std::fprintf(stderr, "[tessera rank %d] %s\n", census_->world_rank(), line.c_str());
  std::fflush(stderr);
  log_to_sink(line);
}

void Liveness::log_to_sink(const std::string& line) const {
  std::lock_guard<std::mutex> lock(log_mu_);
  if (sink_) sink_(line);
}

std::optional<std::string> Liveness::check_stalled(const std::string& what,
                                                   const std::vector<int>& peers,
                                                   double waited_s,
                                                   const std::function<bool()>& resolved) {
  const std::vector<PeerCensus::Answer> answers = census_->ask(peers, window_s_, resolved);
  if (resolved && resolved()) return std::nullopt;  // the wait ended meanwhile
  const CensusVerdict v = judge_census(*census_, answers, window_s_);
  char waited[32];
  std::snprintf(waited, sizeof waited, "%.1f s", waited_s);
  if (!v.silent.empty()) return what + " stalled for " + waited + ":" + v.text;
  // Checks run about every stall_s: log at the 2nd, 4th, 8th... so a long wait says what it
  // waits for without filling the log.
  const long n = stall_s_ > 0 ? std::lround(waited_s / stall_s_) : 0;
  if (n >= 2 && (n & (n - 1)) == 0 && !v.text.empty()) {
    log("still waiting after " + std::string(waited) + " for " + what + "; every peer answered:" +
        v.text);
  }
  return std::nullopt;
}

std::string Liveness::diagnose(const std::vector<int>& peers) {
  return judge_census(*census_, census_->ask(peers, window_s_), window_s_).text;
}

std::string format_rank_list(const std::vector<int>& ranks, size_t max_items) {
  std::string s;
  size_t items = 0;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (items == max_items) {
      s += ",... (" + std::to_string(ranks.size()) + " ranks)";
      break;
    }
    s += (items ? "," : "") + std::to_string(ranks[i]);
    if (j > i) s += (j == i + 1 ? "," : "-") + std::to_string(ranks[j]);
    ++items;
    i = j + 1;
  }
  return s;
}

}  // namespace tessera::parallel
