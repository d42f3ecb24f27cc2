#include "trainer/rank_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace tessera::trainer {

namespace {
std::filesystem::path log_file(const std::string& run_dir, int rank) {
  return std::filesystem::path(run_dir) / "logs" / ("rank-" + std::to_string(rank) + ".log");
}

// Creates logs/ and empties the file; returns its path.
std::string fresh(const std::filesystem::path& path) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::trunc);
  return path.string();
}
}  // namespace

RankLog::RankLog(const std::string& run_dir, int rank, std::ostream* console)
    : path_(fresh(log_file(run_dir, rank))),
      // Append mode: lines other threads add with append() land after ours, never over them.
      file_(path_, std::ios::app),
      tee_(file_.rdbuf(), console ? console->rdbuf() : nullptr),
      stream_(&tee_) {
  if (!file_) throw std::runtime_error(path_ + ": cannot open for writing");
}

void RankLog::append(const std::string& run_dir, int rank, const std::string& line) {
  const std::filesystem::path path = log_file(run_dir, rank);
  if (!std::filesystem::is_directory(path.parent_path())) return;
  // One write(2) on an O_APPEND descriptor: whole, after whatever the log holds.
  const std::string text = line + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  [[maybe_unused]] const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
}

int RankLog::TeeBuf::overflow(int c) {
  if (c == traits_type::eof()) return traits_type::not_eof(c);
  const char ch = static_cast<char>(c);
  if (a_->sputc(ch) == traits_type::eof()) return traits_type::eof();
  if (b_ && b_->sputc(ch) == traits_type::eof()) return traits_type::eof();
  return c;
}

std::streamsize RankLog::TeeBuf::xsputn(const char* s, std::streamsize n) {
  const std::streamsize written = a_->sputn(s, n);
  if (b_) b_->sputn(s, n);
  return written;
}

int RankLog::TeeBuf::sync() {
  const int a = a_->pubsync();
  const int b = b_ ? b_->pubsync() : 0;
  return a == 0 && b == 0 ? 0 : -1;
}

}  // namespace tessera::trainer
