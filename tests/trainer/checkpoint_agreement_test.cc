// The checkpoint ranks' agreement (trainer/checkpoint/agreement.h) over parallel::Comm, on fake
// ranks that are threads: one rank's failure is every rank's error, each rank's checksums add up
// mod 2^64, and collective HDF5 I/O on a communicator without MPI is a clear error.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/fake_comm.h"
#include "tests/trainer/checkpoint_harness.h"
#include "trainer/checkpoint/agreement.h"
#include "trainer/checkpoint/checkpoint.h"

namespace tessera::trainer {
namespace {

TEST(CheckpointAgreement, OneRanksFailureIsEveryRanksErrorWithItsOwnMessageThere) {
  constexpr int kRanks = 3;
  std::vector<std::string> errors(kRanks);
  parallel::run_fake_ranks(kRanks, [&](parallel::Comm& comm) {
    agree<CheckpointSaveFailed>(comm, true, "nothing", "unused");  // all ok: no error
    try {
      const bool ok = comm.rank() != 1;
      agree<CheckpointSaveFailed>(comm, ok, "writing model.h5", "rank 1: No space left on device");
    } catch (const CheckpointSaveFailed& e) {
      errors[static_cast<size_t>(comm.rank())] = e.what();
    }
  });
  EXPECT_EQ(errors[1], "rank 1: No space left on device");
  for (int r : {0, 2}) {
    EXPECT_EQ(errors[static_cast<size_t>(r)],
              "writing model.h5 failed on another rank (see its log)");
  }
}

TEST(CheckpointAgreement, ChecksumsAddUpModulo2To64) {
  constexpr int kRanks = 3;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  auto partial = [](int r) {
    return std::vector<uint64_t>{kMax - static_cast<uint64_t>(r), static_cast<uint64_t>(r) + 1,
                                 uint64_t{1} << 63, 0x0123456789abcdefULL * (r + 1)};
  };
  std::vector<uint64_t> expected(partial(0).size(), 0);
  for (int r = 0; r < kRanks; ++r) {
    for (size_t i = 0; i < expected.size(); ++i) expected[i] += partial(r)[i];  // wraps
  }
  std::mutex mu;
  std::vector<std::vector<uint64_t>> sums;
  parallel::run_fake_ranks(kRanks, [&](parallel::Comm& comm) {
    std::vector<uint64_t> mine = partial(comm.rank());
    sum_checksums(comm, mine);
    std::lock_guard<std::mutex> lock(mu);
    sums.push_back(mine);
  });
  ASSERT_EQ(sums.size(), static_cast<size_t>(kRanks));
  for (const std::vector<uint64_t>& s : sums) EXPECT_EQ(s, expected);
}

TEST(CheckpointAgreement, CollectiveHdf5WithoutMpiNamesWhatIsMissing) {
  const Recipe recipe = testing::SmallRecipe();
  testing::Trainee t(recipe, 1);
  std::string error;
  parallel::run_fake_ranks(1, [&](parallel::Comm& comm) {
    try {
      write_checkpoint(comm, testing::FreshDir("agreement_no_mpi").string(), t.tensors,
                       t.slices.owned(), {1, 100, 1, 5, 1, 1}, recipe, 1);
    } catch (const std::logic_error& e) {
      error = e.what();
    }
  });
  EXPECT_NE(error.find("needs an MPI communicator"), std::string::npos) << error;
}

}  // namespace
}  // namespace tessera::trainer
