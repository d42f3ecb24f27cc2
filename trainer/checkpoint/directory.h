// The checkpoint directory protocol, run.dir/checkpoints/:
//   step-NNNNNNNN/{model.h5,trainer.yaml}  complete checkpoints (tensor_io.h, meta.h)
//   latest                                 the name of the newest complete one
//   .tmp-step-NNNNNNNN/                    a save in progress (or left by a crash)
// A checkpoint is written under its temporary name, flushed, fsynced and renamed into place;
// `latest` then names it (written to latest.tmp and renamed). A crash at any point leaves the
// previous complete checkpoint (and maybe the new one), never a half-written directory that
// resume would pick; a failed save removes its temporary directory. Only the newest keep_last
// complete checkpoints are kept; saving step N also removes checkpoints of steps after N (left by
// a run that was resumed from an earlier checkpoint). Every file operation goes through a
// CheckpointEnv (env.h), rank 0's for the directory, every rank's for its SavePoints.
#pragma once

#include "parallel/comm.h"

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/meta.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// "step-00001000"
std::string checkpoint_name(int64_t step);

// Collective over `comm` (every rank of the run; a communicator of its own, since it may run on
// a background thread): writes the checkpoint for meta.step under checkpoints_dir from the slices
// each rank owns (together they must cover every tensor exactly once) and returns the step
// directory. Every file operation but HDF5's own goes through `env`. Failures throw
// CheckpointSaveFailed (CheckpointWriteFailed while writing model.h5) on every rank.
std::string write_checkpoint(parallel::Comm& comm, const std::string& checkpoints_dir,
                             const std::vector<CheckpointTensor>& tensors,
                             const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                             const Recipe& recipe, int64_t keep_last,
                             CheckpointEnv& env = CheckpointEnv::Posix());

// Accepts a step directory, a checkpoints directory (follows `latest`), a run directory or a
// model.h5 path, and returns the step directory. Throws std::runtime_error naming the path when
// there is none.
std::string resolve_checkpoint(const std::string& path,
                               CheckpointEnv& env = CheckpointEnv::Posix());

// The complete checkpoints (directories with model.h5 and trainer.yaml) under checkpoints_dir:
// the one `latest` names first, then the others, newest first. Empty if there are none. When
// `skipped` is given, it gets one line per step directory left out, naming the missing file
// ("<dir> (named by latest): no trainer.yaml").
std::vector<std::string> resume_candidates(const std::string& checkpoints_dir,
                                           std::vector<std::string>* skipped = nullptr,
                                           CheckpointEnv& env = CheckpointEnv::Posix());

}  // namespace tessera::trainer
