#include "trainer/stop_signal.h"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace tessera::trainer {

namespace {

std::atomic<bool> g_exists{false};  // one StopSignal at a time: the signals are per process
std::atomic<bool> g_armed{false};   // a StopSignal lives: signals are stop requests
std::atomic<int> g_received{0};
std::once_flag g_waiter_started;

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

// Takes every stop signal sent to the process for its whole life: a stop request while a
// StopSignal lives; otherwise the signal's default action (ending the process), as if nothing
// had blocked it, so a run is as killable outside its training loop as before.
void wait_for_signals() {
  const sigset_t set = stop_set();
  for (;;) {
    const int signal = sigwaitinfo(&set, nullptr);
    if (signal < 0) continue;  // EINTR
    if (g_armed.load()) {
      record(signal);
      continue;
    }
    std::signal(signal, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signal);
    pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    std::raise(signal);
  }
}

}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Started after the block: it inherits the mask and is the one thread that takes them.
  std::call_once(g_waiter_started, [] { std::thread(wait_for_signals).detach(); });
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
  g_armed = true;
}

StopSignal::~StopSignal() {
  g_armed = false;
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
