// Resuming a run from a checkpoint: the choice among resume_candidates (`--resume auto`) or the
// checkpoint a path names, and the collective read with fallback past damaged checkpoints.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "trainer/checkpoint/directory.h"
#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/meta.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// Collective over `comm`: restores the slices' parameter values and moments from a checkpoint.
// With resume == "auto": the newest valid checkpoint under run.dir/checkpoints, falling back
// past damaged ones (logging each, and each step directory skipped for a missing file), or a
// fresh start when there is none; else the checkpoint `resume` names (resolve_checkpoint), whose
// damage is an error. Returns the checkpoint's meta (step 0 when starting fresh).
CheckpointMeta resume_from_checkpoint(const std::string& resume, const Recipe& recipe,
                                      parallel::Comm& comm,
                                      const std::vector<CheckpointTensor>& tensors,
                                      const CheckpointSlices& slices, std::ostream& log,
                                      CheckpointEnv& env = CheckpointEnv::Posix());

}  // namespace tessera::trainer
