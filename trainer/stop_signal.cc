#include "trainer/stop_signal.h"

#include <atomic>
#include <stdexcept>

namespace tessera::trainer {

namespace {

std::atomic<int> g_received{0};
std::atomic<bool> g_installed{false};

extern "C" void record_stop_signal(int signal) {
  int none = 0;
  g_received.compare_exchange_strong(none, signal);  // async-signal-safe: lock-free atomic
}

}  // namespace

StopSignal::StopSignal() {
  if (g_installed.exchange(true)) throw std::logic_error("StopSignal: one at a time");
  g_received = 0;
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, &old_usr1_);
  sigaction(SIGTERM, &action, &old_term_);
}

StopSignal::~StopSignal() {
  sigaction(SIGUSR1, &old_usr1_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  g_installed = false;
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
