// The MPI half of Comm::split, shared by every communicator bootstrapped over MPI (MpiComm,
// NcclComm): MPI_Comm_split of the parent into the caller's group, then a collective check on the
// parent that every member named the same group, so that a disagreement throws on every rank.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace tessera::parallel {

struct MpiGroupSplit {
  MPI_Comm comm = MPI_COMM_NULL;  // the new group, errors returned (the caller frees it)
  int color = 0;                  // the group's lowest parent rank
  int key = 0;                    // this rank's position in `ranks`: its new rank
};

// Collective over `parent` (every rank passes its own group). REQUIRES: `ranks` lists distinct
// parent ranks including `rank` (Comm::check_split_ranks). Throws std::runtime_error
// "<what>: ..." on every rank, the new communicator freed, when an MPI call fails or the members'
// lists disagree (`name` labels the group this rank asked for).
MpiGroupSplit split_mpi_group(MPI_Comm parent, int rank, const std::vector<int>& ranks,
                              const std::string& name, const std::string& what);

}  // namespace tessera::parallel
