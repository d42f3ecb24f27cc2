// The collectives by which the ranks of a checkpoint read or save agree: on the outcome of a step
// (one rank's failure is every rank's error, never a rank left waiting in a collective) and on
// the checksums (each rank's partial sums added up).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::trainer {

// Collective over `comm`: whether `ok` holds on every rank.
bool all_ranks_ok(MPI_Comm comm, bool ok);

// Collective over `comm`: throws Error on every rank if `ok` is false on any; the message is this
// rank's own (`mine`) when it failed, else says that `what` failed on another rank.
template <class Error>
void agree(MPI_Comm comm, bool ok, const std::string& what, const std::string& mine) {
  if (all_ranks_ok(comm, ok)) return;
  throw Error(ok ? what + " failed on another rank (see its log)" : mine);
}

// Collective over `comm`: the element-wise sum (mod 2^64) of every rank's partial checksums.
void sum_checksums(MPI_Comm comm, std::vector<uint64_t>& checksums);

// The rank of this process in `comm`.
int rank_in(MPI_Comm comm);

}  // namespace tessera::trainer
