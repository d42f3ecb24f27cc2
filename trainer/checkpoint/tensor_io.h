// model.h5, a checkpoint's tensors, through parallel HDF5: every parameter (MoE routing biases
// included) under its DESIGN.md name and the AdamW moments of trainable ones under
// optimizer/exp_avg/<name> and optimizer/exp_avg_sq/<name>, all as GLOBAL float32 tensors; root
// attributes step and format_version. Written collectively: every rank writes only the elements
// it owns (its ZeRO-1 shard of each parameter region, of the values and the moments); nothing is
// gathered to one rank. Read collectively on resume (each rank its slices, checked against
// trainer.yaml's checksums), or whole in one process (evaluation).
#pragma once

#include "parallel/comm.h"

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/errors.h"
#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/checkpoint/meta.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/param_table.h"

namespace tessera::trainer {

// Collective over `comm`: creates model.h5 at `path` (its directory exists), writes the slices
// each rank owns and closes it; returns the checksum of every tensor (summed over the ranks).
// Every rank calls env.Reached(kCreated) after creating and env.Reached(kWritten) after writing.
// A write that fails on any rank is CheckpointWriteFailed on every rank (the file given up, not
// closed: a collective close after a failed write hangs); a failed close is CheckpointSaveFailed
// on every rank.
std::vector<uint64_t> write_model_h5(parallel::Comm& comm, const std::string& path,
                                     const std::vector<CheckpointTensor>& tensors,
                                     const std::vector<TensorSlice>& owned, int64_t step,
                                     CheckpointEnv& env);

// Throws CheckpointDamaged unless model.h5's step attribute equals trainer.yaml's.
void check_same_step(const H5File& file, const CheckpointInfo& info);

// Collective over `comm`: reads every slice of `reads` from step_dir/model.h5, then checks the
// checksums of `owned` (slices pointing into the data just read; over all ranks they cover every
// tensor once) against trainer.yaml. Every rank throws the same CheckpointDamaged if any rank
// failed to read, model.h5's step differs from trainer.yaml's or any checksum differs, or
// std::runtime_error naming the first tensor whose shape differs from `tensors` (a different
// model). Returns the checkpoint's meta.
CheckpointMeta read_checkpoint(parallel::Comm& comm, const std::string& step_dir,
                               const std::vector<CheckpointTensor>& tensors,
                               const std::vector<TensorSlice>& reads,
                               const std::vector<TensorSlice>& owned,
                               CheckpointEnv& env = CheckpointEnv::Posix());

// Loads the whole model's parameter values from a step directory, in one process (evaluation),
// through a host copy when the model lives on a device, and checks each against trainer.yaml's
// checksum. A missing tensor or a shape mismatch is an error naming the tensor; a damaged
// trainer.yaml, a step that differs from model.h5's or a checksum mismatch is CheckpointDamaged
// naming the file and the datasets. Returns the checkpoint's step.
int64_t load_checkpoint(const std::string& step_dir, ParamTable& params,
                        CheckpointEnv& env = CheckpointEnv::Posix());

}  // namespace tessera::trainer
