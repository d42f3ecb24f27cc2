// Checkpoints (DESIGN.md "Checkpoints"): run.dir/checkpoints/step-NNNNNNNN/ holding
//   model.h5      every parameter (MoE routing biases included) under its DESIGN.md name and the
//                 AdamW moments of trainable ones under optimizer/exp_avg/<name> and
//                 optimizer/exp_avg_sq/<name>, all as GLOBAL float32 tensors; root attributes
//                 step and format_version. Written collectively with parallel HDF5: every rank
//                 writes only the elements it owns (its ZeRO-1 shard of each parameter region, of
//                 the values and the moments); nothing is gathered to one rank.
//   trainer.yaml  step, tokens seen, LR-schedule and optimizer positions, loader state, the recipe,
//                 the layout it ran with, format version and one checksum per dataset; its last
//                 line, `content_checksum: xxh64:<hex>`, is the XXH64 of every byte before it, so
//                 an edited or damaged trainer.yaml is damage like a flipped byte in model.h5.
//                 Format 2 (before the content checksum) is still read, unchecked.
// A checkpoint is written under a temporary name (.tmp-step-N), flushed, fsynced and renamed into
// place; the text file `latest` then names it. A crash at any point leaves the previous complete
// checkpoint (and maybe the new one), never a half-written directory that resume would pick.
// Only the newest keep_last complete checkpoints are kept; saving step N also removes checkpoints
// of steps after N (left by a run that was resumed from an earlier checkpoint).
//
// Checksums are layout-independent: the sum mod 2^64 over a tensor's elements of a 64-bit mix of
// (element index, float bits), so ranks add up the partial sums of the slices they own, whatever
// the layout, and a reader of any layout checks the slices it owns.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

constexpr int64_t kCheckpointFormatVersion = 3;
// The oldest format this tessera reads: 2, whose trainer.yaml has no content_checksum.
constexpr int64_t kOldestCheckpointFormatVersion = 2;
// Dataset names of a parameter's AdamW moments: prefix + parameter name.
constexpr const char* kExpAvgPrefix = "optimizer/exp_avg/";
constexpr const char* kExpAvgSqPrefix = "optimizer/exp_avg_sq/";

struct CheckpointMeta {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  uint64_t loader_epoch = 0;
  uint64_t loader_cursor = 0;
  int64_t optimizer_step = 0;  // AdamW updates taken (its bias correction)
  int64_t world_size = 1;      // processes of the run that wrote it
  // The step's metrics.jsonl line (without checkpoint_stall_s): a run killed after committing
  // the checkpoint but before logging the step gets it back on resume. Empty: not recorded.
  std::string metrics_line = {};
};

// A dataset of model.h5: a global tensor.
struct CheckpointTensor {
  std::string name;
  kernels::Shape shape;
  int64_t numel() const { return kernels::shape_numel(shape); }
};

// The datasets of the whole model's checkpoint, in a fixed order (the order they are created in).
std::vector<CheckpointTensor> checkpoint_tensors(const ModelConfig& config);

// Elements [begin, end) (row-major) of tensor `tensor` (an index into the tensor list), held at
// `data` in this process.
struct TensorSlice {
  int tensor = 0;
  int64_t begin = 0, end = 0;
  float* data = nullptr;
};

// A checkpoint that is incomplete, unreadable or fails its checksums; resuming may fall back to
// an older one. Other errors (a model that does not match the checkpoint's shapes) are
// std::runtime_error.
class CheckpointDamaged : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A save that failed while writing model.h5 (a full disk, say), on every rank alike. HDF5 still
// holds the file it could not close (closing would hang the ranks: checkpoint.cc), and
// MPI_Finalize's HDF5 clean-up crashes on it, so the process must end without finalizing:
// `tessera train` ends through parallel::abort_all, on one rank too.
class CheckpointWriteFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Partial checksum of elements [begin, begin + n) of a tensor.
uint64_t slice_checksum(int64_t begin, const float* data, int64_t n);

// "step-00001000"
std::string checkpoint_name(int64_t step);

// Collective over `comm` (every rank of the run; a communicator of its own, since it may run on
// a background thread): writes the checkpoint for meta.step under checkpoints_dir from the slices
// each rank owns (together they must cover every tensor exactly once) and returns the step
// directory. Environment TESSERA_CHECKPOINT_CRASH=<point>[@<step>] kills the process at that
// point of the write (of that step's save), for crash tests: created | written | closed | renamed.
std::string write_checkpoint(MPI_Comm comm, const std::string& checkpoints_dir,
                             const std::vector<CheckpointTensor>& tensors,
                             const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                             const Recipe& recipe, int64_t keep_last);

// trainer.yaml of a step directory. Throws CheckpointDamaged if it is missing, malformed, of an
// unknown format_version, or (format 3) its content checksum is missing or differs.
struct CheckpointInfo {
  CheckpointMeta meta;
  int64_t format_version = 0;
  std::map<std::string, uint64_t> checksums;  // dataset -> checksum
  std::string layout;                         // "pp=2 dp=2 ep=2 schedule=1f1b micro_batches=2 ..."
  std::string recipe_yaml;                    // the recipe the run used
};
CheckpointInfo read_checkpoint_info(const std::string& step_dir);

// Collective over `comm`: reads every slice of `reads` from step_dir/model.h5, then checks the
// checksums of `owned` (slices pointing into the data just read; over all ranks they cover every
// tensor once) against trainer.yaml. Every rank throws the same CheckpointDamaged if any rank
// failed to read, model.h5's step differs from trainer.yaml's or any checksum differs, or
// std::runtime_error naming the first tensor whose shape differs from `tensors` (a different
// model). Returns the checkpoint's meta.
CheckpointMeta read_checkpoint(MPI_Comm comm, const std::string& step_dir,
                               const std::vector<CheckpointTensor>& tensors,
                               const std::vector<TensorSlice>& reads,
                               const std::vector<TensorSlice>& owned);

// Reads every dataset of a checkpoint and checks it against trainer.yaml (presence, shape,
// checksum). Returns one line per problem, naming the dataset; empty when the checkpoint is sound.
std::vector<std::string> verify_checkpoint(const std::string& step_dir);

// Accepts a step directory, a checkpoints directory (follows `latest`), a run directory or a
// model.h5 path, and returns the step directory. Throws std::runtime_error naming the path when
// there is none.
std::string resolve_checkpoint(const std::string& path);

// The complete checkpoints (directories with model.h5 and trainer.yaml) under checkpoints_dir:
// the one `latest` names first, then the others, newest first. Empty if there are none. When
// `skipped` is given, it gets one line per step directory left out, naming the missing file
// ("<dir> (named by latest): no trainer.yaml").
std::vector<std::string> resume_candidates(const std::string& checkpoints_dir,
                                           std::vector<std::string>* skipped = nullptr);

// Loads the whole model's parameter values from a step directory, in one process (evaluation),
// through a host copy when the model lives on a device, and checks each against trainer.yaml's
// checksum. A missing tensor or a shape mismatch is an error naming the tensor; a damaged
// trainer.yaml, a step that differs from model.h5's or a checksum mismatch is CheckpointDamaged
// naming the file and the datasets. Returns the checkpoint's step.
int64_t load_checkpoint(const std::string& step_dir, ParamTable& params);

}  // namespace tessera::trainer
