// RankLog: every rank's progress lines go to run.dir/logs/rank-<R>.log; world rank 0's also go to
// the console. The file is flushed with every line the trainer flushes, so a crashed rank's log
// shows how far it got; the error that ends a run and lines about stalled peers are appended
// too (append()).
#pragma once

#include <fstream>
#include <ostream>
#include <streambuf>
#include <string>

namespace tessera::trainer {

class RankLog {
 public:
  // Creates run_dir/logs/ and truncates this rank's file; throws naming the path on failure.
  // console may be null (ranks other than 0).
  RankLog(const std::string& run_dir, int rank, std::ostream* console);
  RankLog(const RankLog&) = delete;
  RankLog& operator=(const RankLog&) = delete;

  std::ostream& stream() { return stream_; }
  // Adds `line` to run_dir's log of `rank`, from any thread or after the RankLog is gone (the
  // error that ends a run, a liveness line); does nothing if run_dir has no logs/ yet.
  static void append(const std::string& run_dir, int rank, const std::string& line);
  const std::string& path() const { return path_; }

 private:
  // Writes every character to both buffers (the console's may be null).
  class TeeBuf : public std::streambuf {
   public:
    TeeBuf(std::streambuf* a, std::streambuf* b) : a_(a), b_(b) {}

   protected:
    int overflow(int c) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;
    int sync() override;

   private:
    std::streambuf* a_;
    std::streambuf* b_;
  };
  std::string path_;
  std::ofstream file_;
  TeeBuf tee_;
  std::ostream stream_;
};

}  // namespace tessera::trainer
