// What checkpoint reads and saves throw besides std::runtime_error.
#pragma once

#include <stdexcept>

namespace tessera::trainer {

// A checkpoint that is incomplete, unreadable or fails its checksums; resuming may fall back to
// an older one. Other errors (a model that does not match the checkpoint's shapes) are
// std::runtime_error.
class CheckpointDamaged : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A save that failed, on every rank alike: the message is the failing rank's own, naming the file
// and the system's reason ("<dir>/.tmp-step-N/trainer.yaml: write: No space left on device"),
// or, on the other ranks, what failed on another rank. The temporary directory is removed, and
// `latest` names a complete checkpoint (the previous one; the new one if only updating `latest`
// or removing old checkpoints failed).
class CheckpointSaveFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A save that failed while writing model.h5 (a full disk, say), on every rank alike. HDF5 still
// holds the file it could not close (closing would hang the ranks: tensor_io.cc), and
// MPI_Finalize's HDF5 clean-up crashes on it, so the process must end without finalizing:
// `tessera train` ends through parallel::abort_all, on one rank too.
class CheckpointWriteFailed : public CheckpointSaveFailed {
 public:
  using CheckpointSaveFailed::CheckpointSaveFailed;
};

}  // namespace tessera::trainer
