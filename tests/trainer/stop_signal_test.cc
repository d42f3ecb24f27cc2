// Stop signals reach the training loop through StopSignal's own thread (or a handler on threads
// that never blocked them), never interrupting a thread that blocked them: the first one sent is
// recorded, later ones do not replace it, and none of them ends the process.
#include "trainer/stop_signal.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

namespace tessera::trainer {
namespace {

// Waits (bounded) until the StopSignal has seen a signal; the bound only ends a broken test.
int wait_received(const StopSignal& s) {
  for (int i = 0; i < 2000 && s.received() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return s.received();
}

class StopSignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_BLOCK, &none, &saved_);
    block_stop_signals();
  }
  // Signals left pending would hit the rest of the test binary once unblocked: none are (each
  // test's StopSignal took them), and the mask comes back.
  void TearDown() override { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  sigset_t saved_;
};

TEST_F(StopSignalTest, RecordsTheFirstSignalOnItsOwnThread) {
  const StopSignal s;
  EXPECT_EQ(s.received(), 0);
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  EXPECT_EQ(wait_received(s), SIGUSR1);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);  // the process lives on, the first one stays
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(s.received(), SIGUSR1);
  EXPECT_STREQ(StopSignal::name(s.received()), "SIGUSR1");
}

// The thread that blocked the signals (tessera's computing threads) is never interrupted, and
// the signal still arrives: sent to the whole process while this thread computes.
TEST_F(StopSignalTest, TheBlockingThreadIsNeverInterrupted) {
  const StopSignal s;
  sigset_t pending;
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  EXPECT_EQ(wait_received(s), SIGUSR1);
  // Nothing is left pending on this thread either (it was taken, not queued here).
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGUSR1));
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  EXPECT_TRUE(sigismember(&mask, SIGUSR1));
  EXPECT_TRUE(sigismember(&mask, SIGTERM));
}

TEST_F(StopSignalTest, OneAtATime) {
  const StopSignal s;
  EXPECT_THROW(StopSignal(), std::logic_error);
}

}  // namespace
}  // namespace tessera::trainer
