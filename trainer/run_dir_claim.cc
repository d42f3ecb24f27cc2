#include "trainer/run_dir_claim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <utility>
#include <vector>

namespace tessera::trainer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLockFile = ".tessera.lock";

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

// The lock file's text: "host pid" of the holder (empty while it is writing it).
std::string read_holder(const std::string& path) {
  std::ifstream in(path);
  std::string host, pid;
  if (!(in >> host >> pid)) return "";
  return "host " + host + ", pid " + pid;
}

}  // namespace

std::string run_dir_lock_path(const std::string& run_dir) {
  return (fs::path(run_dir) / kLockFile).string();
}

RunDirLock::RunDirLock(const std::string& run_dir) {
  const std::string path = run_dir_lock_path(run_dir);
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) throw std::runtime_error("run.dir " + run_dir + ": cannot create (" + ec.message() + ")");
  // O_CLOEXEC: a program this process starts must not inherit (and so keep) the lock.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::runtime_error(path + ": cannot open the run directory's lock file (" +
                             std::strerror(errno) + ")");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      const std::string holder = read_holder(path);
      throw RunDirRefused("run.dir " + run_dir + " is in use by another training run (" +
                              (holder.empty() ? std::string("its lock file is still empty")
                                              : holder) +
                              ", holding " + path +
                              "); wait for it to end or choose another run.dir",
                          1);
    }
    // Some shared file systems (Lustre without -o flock) have no flock: train unprotected rather
    // than not at all, and say so.
    warning_ = "tessera: warning: cannot lock " + path + " (" + std::strerror(err) +
               "): nothing stops a second run from using run.dir " + run_dir + " at the same time";
    return;
  }
  const std::string text = host_name() + " " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::write(fd, text.data(), text.size()) !=
                                     static_cast<ssize_t>(text.size())) {
    ::close(fd);
    throw std::runtime_error(path + ": cannot write the lock holder (" + std::strerror(errno) +
                             ")");
  }
  fd_ = fd;
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

RunDirLock::RunDirLock(RunDirLock&& other) noexcept
    : fd_(other.fd_), warning_(std::move(other.warning_)) {
  other.fd_ = -1;
}

RunDirLock& RunDirLock::operator=(RunDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    warning_ = std::move(other.warning_);
    other.fd_ = -1;
  }
  return *this;
}

std::string previous_run_in(const std::string& run_dir) {
  const fs::path dir(run_dir);
  std::vector<std::string> found;
  const fs::path checkpoints = dir / "checkpoints";
  std::error_code ec;
  if (fs::is_directory(checkpoints, ec)) {
    std::string latest, newest;
    if (std::ifstream in(checkpoints / "latest"); in >> latest) latest = "latest: " + latest;
    for (const auto& entry : fs::directory_iterator(checkpoints, ec)) {
      const std::string n = entry.path().filename().string();
      if (entry.is_directory() && n.rfind("step-", 0) == 0 && n > newest) newest = n;
    }
    if (!latest.empty()) {
      found.push_back("checkpoints/ (" + latest + ")");
    } else if (!newest.empty()) {
      found.push_back("checkpoints/ (" + newest + ")");
    }
  }
  const fs::path metrics = dir / "metrics.jsonl";
  if (fs::is_regular_file(metrics, ec) && fs::file_size(metrics, ec) > 0) {
    std::ifstream in(metrics);
    int64_t lines = 0;
    for (std::string line; std::getline(in, line);) ++lines;
    found.push_back("metrics.jsonl (" + std::to_string(lines) + " step(s))");
  }
  std::string out;
  for (const std::string& f : found) out += (out.empty() ? "" : ", ") + f;
  return out;
}

void remove_previous_run(const std::string& run_dir) {
  const fs::path dir(run_dir);
  for (const char* name : {"checkpoints", "metrics.jsonl", "DONE", "logs", "trace", "trace.json"}) {
    std::error_code ec;
    fs::remove_all(dir / name, ec);
    if (ec) {
      throw std::runtime_error("--overwrite: cannot remove " + (dir / name).string() + " (" +
                               ec.message() + ")");
    }
  }
}

RunDirLock claim_run_dir(const std::string& run_dir, RunDirUse use, parallel::Comm& world) {
  RunDirLock lock;
  int64_t status = 0;  // 0: claimed; else the exit status of the refusal
  std::string message;
  if (world.rank() == 0) {
    try {
      lock = RunDirLock(run_dir);
      if (use == RunDirUse::kFresh) {
        if (const std::string previous = previous_run_in(run_dir); !previous.empty()) {
          throw RunDirRefused(
              "run.dir " + run_dir + " already holds a training run (" + previous +
                  "): pass `--resume auto` to continue it, or `--overwrite` to delete its "
                  "checkpoints and metrics and start over",
              2);
        }
      } else if (use == RunDirUse::kOverwrite) {
        remove_previous_run(run_dir);
      }
    } catch (const RunDirRefused& e) {
      status = e.exit_status(), message = e.what();
    } catch (const std::exception& e) {
      status = 1, message = e.what();
    }
  }
  // The outcome reaches every rank before any of them goes on to a collective rank 0 would miss.
  if (world.size() > 1) {
    int64_t head[2] = {status, static_cast<int64_t>(message.size())};
    world.broadcast(std::span<int64_t>(head), 0).wait();
    status = head[0];
    std::vector<int32_t> text(message.begin(), message.end());
    text.resize(static_cast<size_t>(head[1]));
    if (!text.empty()) world.broadcast(std::span<int32_t>(text), 0).wait();
    message.assign(text.begin(), text.end());
  }
  if (status != 0) throw RunDirRefused(message, static_cast<int>(status));
  return lock;
}

}  // namespace tessera::trainer
