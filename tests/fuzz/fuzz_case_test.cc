// The fuzz harness itself: run_case tells a return, an exception with its message, and each kind
// of failure (a crash, an abort, a hang, an exit, a foreign exception, an empty message, bad_alloc)
// apart, so the fuzz tests can fail.
#include "tests/fuzz/fuzz_case.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tessera::fuzz {
namespace {

using Kind = CaseResult::Kind;

TEST(FuzzCase, ReturnAndExceptionAreOutcomes) {
  EXPECT_EQ(run_case([] {}).kind, Kind::kLoaded);
  const CaseResult threw = run_case([] { throw std::runtime_error("a.yaml: bad key"); });
  EXPECT_EQ(threw.kind, Kind::kThrew);
  EXPECT_EQ(threw.detail, "a.yaml: bad key");
}

TEST(FuzzCase, CrashesHangsAndBadExceptionsAreFailures) {
  const CaseResult crashed = run_case([] { std::raise(SIGSEGV); });
  EXPECT_EQ(crashed.kind, Kind::kFailed);
  EXPECT_NE(crashed.detail.find("signal " + std::to_string(SIGSEGV)), std::string::npos) << crashed.detail;
  EXPECT_EQ(run_case([] { std::abort(); }).kind, Kind::kFailed);
  const CaseResult hung =
      run_case([] { std::this_thread::sleep_for(std::chrono::hours(1)); }, std::chrono::milliseconds(300));
  EXPECT_EQ(hung.kind, Kind::kFailed);
  EXPECT_NE(hung.detail.find("hang"), std::string::npos);
  EXPECT_EQ(run_case([] { std::exit(0); }).kind, Kind::kFailed);
  EXPECT_EQ(run_case([] { throw 42; }).kind, Kind::kFailed);
  EXPECT_EQ(run_case([] { throw std::runtime_error(""); }).kind, Kind::kFailed);
  const CaseResult huge = run_case([] {
    std::vector<char> v(size_t{1} << 40);  // past the child's address-space cap
    v[0] = 1;
  });
  EXPECT_EQ(huge.kind, Kind::kFailed);
  EXPECT_NE(huge.detail.find("bad_alloc"), std::string::npos) << huge.detail;
}

}  // namespace
}  // namespace tessera::fuzz
