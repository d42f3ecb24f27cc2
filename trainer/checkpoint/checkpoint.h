// Checkpoints (DESIGN.md "Checkpoints"): run.dir/checkpoints/step-NNNNNNNN/ holding model.h5
// (every parameter and AdamW moment as a global float32 tensor, written collectively with
// parallel HDF5, each rank its own slices) and trainer.yaml (meta, the recipe, one checksum per
// dataset, and its own content checksum). This header includes the whole checkpoint API:
//   env.h        the file-system operations, injected (CheckpointEnv; POSIX; test decorators)
//   directory.h  the directory protocol: temporary directory, rename, `latest`, retention,
//                resolve_checkpoint, resume_candidates
//   meta.h       CheckpointMeta and trainer.yaml with its content checksum
//   tensors.h    the checkpoint's tensors, slices and layout-independent checksums
//   tensor_io.h  model.h5's collective write and read, and evaluation's whole-model load
//   verify.h     verify_checkpoint
//   errors.h     CheckpointDamaged, CheckpointSaveFailed, CheckpointWriteFailed
// Beside them: writer.h (synchronous or background saves), resume.h (`--resume`), slices.h
// (which elements a rank owns), staging.h (host mirrors of device memory), hdf5_io.h (HDF5),
// agreement.h (the ranks' agreement on outcomes), crashing_env.h (TESSERA_CHECKPOINT_CRASH).
#pragma once

#include "trainer/checkpoint/directory.h"
#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/errors.h"
#include "trainer/checkpoint/meta.h"
#include "trainer/checkpoint/tensor_io.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/checkpoint/verify.h"
