#include "parallel/blocking_watch.h"

#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "parallel/mpi_env.h"

namespace tessera::parallel {

namespace {
constexpr std::chrono::milliseconds kCheckInterval{100};
}  // namespace

BlockingWatch::Region::Region(Region&& other) noexcept
    : watch_(std::move(other.watch_)), id_(std::exchange(other.id_, 0)) {}

BlockingWatch::Region& BlockingWatch::Region::operator=(Region&& other) noexcept {
  if (this != &other) {
    if (watch_) watch_->end(id_);
    watch_ = std::move(other.watch_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

BlockingWatch::Region::~Region() {
  if (watch_) watch_->end(id_);
}

BlockingWatch::BlockingWatch(std::shared_ptr<Liveness> liveness)
    : liveness_(std::move(liveness)), thread_([this] { loop(); }) {}

BlockingWatch::~BlockingWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

BlockingWatch::Region BlockingWatch::watch(const std::shared_ptr<BlockingWatch>& self,
                                           std::string what, double timeout_s) {
  const Clock::time_point now = Clock::now();
  const ActivityBoard::Id board_id = self->liveness_->board().begin(what);
  const double stall = self->liveness_->stall_s();
  std::lock_guard<std::mutex> lock(self->mu_);
  const uint64_t id = self->next_id_++;
  self->regions_.emplace(
      id, Watched{std::move(what), now, timeout_s,
                  stall > 0 ? now + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(stall))
                            : Clock::time_point::max(),
                  board_id});
  self->cv_.notify_all();
  return Region(self, id);
}

void BlockingWatch::end(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) return;
  liveness_->board().end(it->second.board_id);
  regions_.erase(it);
}

void BlockingWatch::fail(const std::string& message) {
  liveness_->log_to_sink(message);  // abort_all prints it on stderr
  abort_all(message, 1, AbortScope::kThisRank);
}

void BlockingWatch::loop() {
  std::vector<int> everyone(static_cast<size_t>(liveness_->census().world_size()));
  for (size_t r = 0; r < everyone.size(); ++r) everyone[r] = static_cast<int>(r);
  const double stall = liveness_->stall_s();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (regions_.empty()) {
      cv_.wait(lock, [this] { return stop_ || !regions_.empty(); });
    } else {
      cv_.wait_for(lock, kCheckInterval, [this] { return stop_; });
    }
    if (stop_) return;
    const Clock::time_point now = Clock::now();
    for (auto& [region_id, r] : regions_) {
      const uint64_t id = region_id;
      const double waited = std::chrono::duration<double>(now - r.since).count();
      if (r.timeout_s > 0 && waited >= r.timeout_s) {
        const std::string what = r.what;
        const double timeout = r.timeout_s;
        lock.unlock();
        char text[64];
        std::snprintf(text, sizeof text, " did not finish within %g s", timeout);
        std::string peers;
        try {
          peers = liveness_->diagnose(everyone);
        } catch (const std::exception& e) {
          peers = std::string("\n  (the liveness check failed: ") + e.what() + ")";
        }
        fail("blocking timeout: " + what + text + peers);
      }
      if (now < r.next_check) continue;
      r.next_check = now + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(stall));
      const std::string what = r.what;
      // The census blocks up to its window: without the lock, so regions can end meanwhile.
      lock.unlock();
      std::optional<std::string> error;
      try {
        error = liveness_->check_stalled(what, everyone, waited, [this, id] {
          std::lock_guard<std::mutex> guard(mu_);
          return regions_.count(id) == 0;
        });
      } catch (const std::exception& e) {  // on this thread an escaping exception would terminate
        error = what + ": the liveness check failed: " + e.what();
      }
      if (error) fail("blocking call failed: " + *error);
      lock.lock();
      break;  // the map may have changed: rescan at the next interval
    }
  }
}

}  // namespace tessera::parallel
