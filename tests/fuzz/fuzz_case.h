// Runs one fuzz case in a child process, under a time limit, and says how it ended.
//
// A case must either return (the input loaded) or throw a std::exception whose message names the
// input's file. A crash (a signal: SIGSEGV inside HDF5, an abort), a hang, an exit, an exception
// of another type, an empty message or std::bad_alloc (a size read from the file and trusted) are
// failures. The child runs in its own process so that one crash neither ends the test run nor hides
// the input that caused it; its address space is capped so that an unchecked huge allocation fails
// at once instead of swapping. Children never call MPI.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <sstream>
#include <string>

namespace tessera::fuzz {

struct CaseResult {
  enum class Kind { kLoaded, kThrew, kFailed };
  Kind kind = Kind::kFailed;
  std::string detail;  // kThrew: the message; kFailed: what went wrong
};

inline constexpr std::chrono::seconds kCaseLimit{20};  // generous: a bound on hangs, not a timing
inline constexpr rlim_t kChildAddressSpace = rlim_t{8} << 30;

// Mutations per fuzz test: `ci_default`, or TESSERA_FUZZ_MUTATIONS for a longer search by hand.
inline int mutation_count(int ci_default) {
  const char* wanted = std::getenv("TESSERA_FUZZ_MUTATIONS");
  return wanted != nullptr && std::atoi(wanted) > 0 ? std::atoi(wanted) : ci_default;
}

inline CaseResult run_case(const std::function<void()>& body,
                           std::chrono::milliseconds limit = kCaseLimit) {
  int fds[2];
  if (::pipe(fds) != 0) return {CaseResult::Kind::kFailed, std::string("pipe: ") + std::strerror(errno)};
  const pid_t pid = ::fork();
  if (pid < 0) return {CaseResult::Kind::kFailed, std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    ::close(fds[0]);
    const rlimit cap{kChildAddressSpace, kChildAddressSpace};
    ::setrlimit(RLIMIT_AS, &cap);
    std::string report;
    try {
      body();
      report = "L";
    } catch (const std::bad_alloc& e) {
      report = std::string("Fstd::bad_alloc (an unchecked size?): ") + e.what();
    } catch (const std::exception& e) {
      report = std::string("T") + e.what();
    } catch (...) {
      report = "Fan exception not derived from std::exception";
    }
    for (size_t done = 0; done < report.size();) {
      const ssize_t n = ::write(fds[1], report.data() + done, report.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::_exit(0);  // no atexit handlers, no gtest teardown in the child
  }
  ::close(fds[1]);
  std::string report;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // the deadline check above ends the wait
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;  // EOF: the child is done (or dead)
    report.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return {CaseResult::Kind::kFailed, "hang: no result within the time limit"};
  if (WIFSIGNALED(status)) {
    return {CaseResult::Kind::kFailed, std::string("killed by signal ") + std::to_string(WTERMSIG(status)) +
                                           " (" + ::strsignal(WTERMSIG(status)) + ")"};
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || report.empty()) {
    return {CaseResult::Kind::kFailed,
            "the case exited (status " + std::to_string(WEXITSTATUS(status)) + ") without a result"};
  }
  const char tag = report[0];
  report.erase(0, 1);
  if (tag == 'L') return {CaseResult::Kind::kLoaded, ""};
  if (tag == 'T') {
    if (report.empty()) return {CaseResult::Kind::kFailed, "an exception with an empty message"};
    return {CaseResult::Kind::kThrew, report};
  }
  return {CaseResult::Kind::kFailed, report};
}

// A whole file's bytes, and a file made of `bytes` (the mutated inputs).
inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace tessera::fuzz
