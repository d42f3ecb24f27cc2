#include "parallel/activity_board.h"

#include <cstdio>

namespace tessera::parallel {

ActivityBoard::Id ActivityBoard::begin(std::string description) {
  std::lock_guard<std::mutex> lock(mu_);
  const Id id = next_++;
  entries_.emplace(id, Entry{std::move(description), Clock::now()});
  return id;
}

void ActivityBoard::end(Id id) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(id);
}

size_t ActivityBoard::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

std::string ActivityBoard::summary(size_t max_chars) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.empty()) return "outside communication (nothing outstanding)";
  const Clock::time_point now = Clock::now();
  std::string out;
  size_t listed = 0;
  for (const auto& [id, e] : entries_) {
    char age[48];
    std::snprintf(age, sizeof age, "waiting %.1f s in ",
                  std::chrono::duration<double>(now - e.since).count());
    std::string item = (listed ? "; " : "") + std::string(age) + e.description;
    const std::string more = "; and " + std::to_string(entries_.size() - listed) + " more";
    if (out.size() + item.size() + more.size() > max_chars) {
      if (listed == 0) out = item;  // cut below
      else out += more;
      break;
    }
    out += item;
    ++listed;
  }
  if (out.size() > max_chars) out.resize(max_chars);
  return out;
}

}  // namespace tessera::parallel
