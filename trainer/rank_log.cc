#include "trainer/rank_log.h"

#include <filesystem>
#include <stdexcept>

namespace tessera::trainer {

namespace {
std::string log_path(const std::string& run_dir, int rank) {
  const std::filesystem::path dir = std::filesystem::path(run_dir) / "logs";
  std::filesystem::create_directories(dir);
  return (dir / ("rank-" + std::to_string(rank) + ".log")).string();
}
}  // namespace

RankLog::RankLog(const std::string& run_dir, int rank, std::ostream* console)
    : path_(log_path(run_dir, rank)),
      file_(path_, std::ios::trunc),
      tee_(file_.rdbuf(), console ? console->rdbuf() : nullptr),
      stream_(&tee_) {
  if (!file_) throw std::runtime_error(path_ + ": cannot open for writing");
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
