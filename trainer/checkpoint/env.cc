#include "trainer/checkpoint/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace tessera::trainer {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& path, const char* op, int err) {
  throw std::runtime_error(path + ": " + op + ": " + std::strerror(err));
}

// Closes a descriptor on every path; close() errors of written files are checked explicitly.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void sync_path(const std::string& path, int flags) {
  Fd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (fd.get() < 0) fail(path, "open for fsync", errno);
  if (::fsync(fd.get()) != 0) fail(path, "fsync", errno);
}

}  // namespace

const char* save_point_name(SavePoint point) {
  switch (point) {
    case SavePoint::kCreated: return "created";
    case SavePoint::kWritten: return "written";
    case SavePoint::kClosed: return "closed";
    case SavePoint::kRenamed: return "renamed";
  }
  return "?";
}

CheckpointEnv& CheckpointEnv::Posix() {
  static PosixCheckpointEnv env;
  return env;
}

void PosixCheckpointEnv::CreateDir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error(path + ": mkdir: " + ec.message());
}

void PosixCheckpointEnv::WriteFile(const std::string& path, const std::string& data) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail(path, "open for writing", errno);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "write", errno);
    }
    done += static_cast<size_t>(n);  // a short write: the rest goes in the next call
  }
  if (::fsync(fd.get()) != 0) fail(path, "fsync", errno);
  if (::close(fd.release()) != 0) fail(path, "close", errno);
}

std::string PosixCheckpointEnv::ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(path, "open", errno);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "read", errno);
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

void PosixCheckpointEnv::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    throw std::runtime_error(from + ": rename to " + to + ": " + std::strerror(errno));
  }
}

void PosixCheckpointEnv::RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw std::runtime_error(path + ": remove: " + ec.message());
}

std::vector<DirEntry> PosixCheckpointEnv::ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (!dir) fail(path, "opendir", errno);
  std::vector<DirEntry> out;
  errno = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) is_dir = DirExists(path + "/" + name);
    out.push_back({name, is_dir});
    errno = 0;
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) fail(path, "readdir", err);
  return out;
}

bool PosixCheckpointEnv::FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool PosixCheckpointEnv::DirExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void PosixCheckpointEnv::SyncFile(const std::string& path) { sync_path(path, O_RDONLY); }

void PosixCheckpointEnv::SyncDir(const std::string& path) {
  sync_path(path, O_RDONLY | O_DIRECTORY);
}

void write_file_atomically(CheckpointEnv& env, const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  try {
    env.WriteFile(tmp, text);
    env.Rename(tmp, path);
  } catch (const std::exception&) {
    try {
      env.RemoveAll(tmp);
    } catch (const std::exception&) {
      // the first error is the one to report
    }
    throw;
  }
}

}  // namespace tessera::trainer
