// The collectives by which the ranks of a checkpoint read or save agree: on the outcome of a step
// (one rank's failure is every rank's error, never a rank left waiting in a collective) and on
// the checksums (each rank's partial sums added up). They go through parallel::Comm, so a rank
// that stops answering is named by the communicator's liveness checks like in training.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace tessera::trainer {

// Collective over `comm`: whether `ok` holds on every rank.
bool all_ranks_ok(parallel::Comm& comm, bool ok);

// Collective over `comm`: throws Error on every rank if `ok` is false on any; the message is this
// rank's own (`mine`) when it failed, else says that `what` failed on another rank.
template <class Error>
void agree(parallel::Comm& comm, bool ok, const std::string& what, const std::string& mine) {
  if (all_ranks_ok(comm, ok)) return;
  throw Error(ok ? what + " failed on another rank (see its log)" : mine);
}

// Collective over `comm`: the element-wise sum (mod 2^64) of every rank's partial checksums
// (the same count on every rank).
void sum_checksums(parallel::Comm& comm, std::vector<uint64_t>& checksums);

}  // namespace tessera::trainer
