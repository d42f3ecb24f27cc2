#include "trainer/checkpoint/agreement.h"

#include <stdexcept>

namespace tessera::trainer {

namespace {
void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string("checkpoint: ") + what + " failed");
}
}  // namespace

bool all_ranks_ok(MPI_Comm comm, bool ok) {
  int bad = ok ? 0 : 1, any = 0;
  check_mpi(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm), "MPI_Allreduce");
  return any == 0;
}

void sum_checksums(MPI_Comm comm, std::vector<uint64_t>& checksums) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, checksums.data(), static_cast<int>(checksums.size()),
                          MPI_UINT64_T, MPI_SUM, comm),
            "MPI_Allreduce of the checksums");
}

int rank_in(MPI_Comm comm) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  return rank;
}

}  // namespace tessera::trainer
