#include "data/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tessera::data {

namespace {
constexpr double kPlainInterval = 5.0;  // seconds between plain progress lines
}  // namespace

std::string human_count(double value) {
  const char* suffixes[] = {"", "k", "M", "G", "T", "P"};
  int i = 0;
  while (std::fabs(value) >= 1000.0 && i < 5) {
    value /= 1000.0;
    ++i;
  }
  char text[32];
  if (i == 0) {
    std::snprintf(text, sizeof text, "%.0f", value);
  } else {
    std::snprintf(text, sizeof text, value < 10 ? "%.2f%s" : value < 100 ? "%.1f%s" : "%.0f%s", value,
                  suffixes[i]);
  }
  return text;
}

Progress::Progress(std::ostream* out, bool tty, std::string label, uint64_t total, std::string unit)
    : out_(out),
      tty_(tty),
      label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done) {
  done_ = done;
  if (out_ == nullptr || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (since_draw >= 0.1) draw(false);
    return;
  }
  if (since_draw >= kPlainInterval) draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (out_ != nullptr) draw(true);
}

void Progress::draw(bool final) {
  const auto now = std::chrono::steady_clock::now();
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  char stats[160];
  std::snprintf(stats, sizeof stats, "%5.1f%%  %s/%s %s  %s %s/s", 100.0 * fraction,
                human_count(static_cast<double>(done_)).c_str(),
                human_count(static_cast<double>(total_)).c_str(), unit_.c_str(),
                human_count(rate).c_str(), unit_.c_str());
  std::string line = label_;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    line += " [" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] " + stats;
    if (!final && rate > 0 && total_ > done_) {
      char eta[32];
      std::snprintf(eta, sizeof eta, "  ETA %.0fs", static_cast<double>(total_ - done_) / rate);
      line += eta;
    } else {
      char took[32];
      std::snprintf(took, sizeof took, "  %.1fs", elapsed);
      line += took;
    }
    *out_ << '\r' << line << "\033[K";
    if (final) *out_ << '\n';
  } else {
    *out_ << line << ": " << stats << '\n';
  }
  out_->flush();
}

}  // namespace tessera::data
