#include "trainer/stop_signal.h"

#include <pthread.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <stdexcept>

namespace tessera::trainer {

namespace {

std::atomic<bool> g_exists{false};  // one StopSignal at a time: the signals are per process
std::atomic<int> g_received{0};

void record(int signal) {
  int none = 0;
  g_received.compare_exchange_strong(none, signal);  // async-signal-safe: lock-free atomic
}

extern "C" void record_stop_signal(int signal) { record(signal); }

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

StopSignal::StopSignal() {
  if (g_exists.exchange(true)) throw std::logic_error("StopSignal: one at a time");
  g_received = 0;
  block_stop_signals();
  // Threads that libraries started before main (a BLAS pool, say) never blocked the signals, and
  // the kernel prefers them: the handler records the signal there instead of the default action
  // ending the process. Threads that block them (all of tessera's) are never interrupted.
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, &old_usr1_);
  sigaction(SIGTERM, &action, &old_term_);
  waiter_ = std::thread([this] {
    const sigset_t set = stop_set();
    const timespec poll{0, 50'000'000};  // how soon the destructor's request is seen
    while (!done_.load()) {
      siginfo_t info;
      const int signal = sigtimedwait(&set, &info, &poll);
      if (signal > 0) {
        record(signal);
      } else if (errno != EAGAIN && errno != EINTR) {
        return;  // cannot wait (never seen): stop requests are then ignored, not fatal
      }
    }
  });
}

StopSignal::~StopSignal() {
  done_ = true;
  waiter_.join();
  sigaction(SIGUSR1, &old_usr1_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  g_exists = false;
}

int StopSignal::received() const { return g_received.load(); }

const char* StopSignal::name(int signal) {
  switch (signal) {
    case SIGUSR1:
      return "SIGUSR1";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal";
  }
}

}  // namespace tessera::trainer
