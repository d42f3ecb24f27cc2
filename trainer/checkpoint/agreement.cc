#include "trainer/checkpoint/agreement.h"

#include <cstring>
#include <span>

namespace tessera::trainer {

bool all_ranks_ok(parallel::Comm& comm, bool ok) {
  int32_t bad = ok ? 0 : 1;
  comm.all_reduce(std::span<int32_t>(&bad, 1), {.op = parallel::ReduceOp::kMax}).wait();
  return bad == 0;
}

void sum_checksums(parallel::Comm& comm, std::vector<uint64_t>& checksums) {
  // The communicator has no 64-bit unsigned sum: gather every rank's checksums as 32-bit words
  // (a few per tensor) and add them up here, wrapping mod 2^64 as the checksums' definition says.
  const size_t n = checksums.size();
  std::vector<uint32_t> mine(2 * n), all(2 * n * static_cast<size_t>(comm.size()));
  std::memcpy(mine.data(), checksums.data(), n * sizeof(uint64_t));
  comm.all_gather(parallel::InSpan<uint32_t>(mine), std::span<uint32_t>(all)).wait();
  std::fill(checksums.begin(), checksums.end(), uint64_t{0});
  for (int r = 0; r < comm.size(); ++r) {
    for (size_t i = 0; i < n; ++i) {
      uint64_t part = 0;
      std::memcpy(&part, all.data() + (static_cast<size_t>(r) * n + i) * 2, sizeof(part));
      checksums[i] += part;
    }
  }
}

}  // namespace tessera::trainer
