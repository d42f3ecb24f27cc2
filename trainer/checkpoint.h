// Checkpoints (DESIGN.md "Checkpoints"): run.dir/checkpoints/step-NNNNNNNN/ holding
//   model.h5      every parameter under its DESIGN.md name (global tensors, float32), the AdamW
//                 moments under optimizer/exp_avg/<name> and optimizer/exp_avg_sq/<name>, and
//                 root attributes step, format_version;
//   trainer.yaml  step, tokens seen, loader state, the full recipe and the layout it ran with.
// A checkpoint is written under a temporary name, flushed to disk and renamed when complete; the
// text file `latest` then names it. Only the newest keep_last complete checkpoints are kept.
// This is the single-process writer; parallel HDF5 hyperslab writes replace it for layouts.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointMeta {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  uint64_t loader_epoch = 0;
  uint64_t loader_cursor = 0;
  int64_t world_size = 1;  // processes of the run that wrote it
};

// "step-00001000"
std::string checkpoint_name(int64_t step);

// Writes the checkpoint for meta.step under checkpoints_dir and returns its directory.
// REQUIRES: params.has_moments() (the whole model's table with its optimizer state).
std::string save_checkpoint(const std::string& checkpoints_dir, ParamTable& params,
                            const CheckpointMeta& meta,
                            const Recipe& recipe, int64_t keep_last);

// Accepts a step directory, a checkpoints directory (follows `latest`) or a model.h5 path, and
// returns the step directory. Throws std::runtime_error naming the path when there is none.
std::string resolve_checkpoint(const std::string& path);

// Loads every parameter of `params` from step_dir/model.h5 (and the AdamW moments when
// with_optimizer, which REQUIRES params.has_moments()). A missing tensor or a shape mismatch
// is an error naming the tensor.
// Returns the checkpoint's step.
int64_t load_checkpoint(const std::string& step_dir, ParamTable& params, bool with_optimizer);

}  // namespace tessera::trainer
