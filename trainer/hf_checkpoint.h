// Hugging Face DeepSeek-V3 checkpoint directories, to and from tessera checkpoints (single
// process; `tessera checkpoint export|import`). An HF directory holds
//   config.json                         hf_config.h's keys
//   model-0000k-of-0000n.safetensors    the tensors under their HF names (hf_names.h), sharded
//   model.safetensors.index.json        {"metadata": {"total_size": bytes of tensor data},
//                                        "weight_map": {HF name: file}}
// (import also reads a lone model.safetensors without an index).
//
// Export writes the parameters of a checkpoint's model.h5 (not the AdamW moments) in bf16 or fp32;
// routing biases (e_score_correction_bias) stay F32, since their updates fall below bf16's
// resolution. Each MTP layer gets HF's copies of the embedding and head. The index is written
// last: a directory without one is an export that did not finish.
//
// Import reads F32, BF16 and F8_E4M3 tensors; an F8 weight [out, in] comes with
// "<name>_scale_inv" [ceil(out/128), ceil(in/128)] and each element is fp8 * the scale of its
// 128x128 block (DeepSeek-V3's README_WEIGHTS.md). MTP layers' copies of the embedding and head
// are compared with the main ones: tessera ties them, so the main ones are used and a copy that
// differs is a warning (naming both and the largest difference). Every HF tensor must be used:
// one that is no parameter of the recipe's model is an error, as is a missing one. The result is
// a step-0 checkpoint (AdamW moments zero, optimizer, schedule and data loader at their start)
// that `tessera train --resume` continues from, in any layout. Import holds the model's fp32
// values in memory; export holds one tensor at a time.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

constexpr const char* kHfIndexFile = "model.safetensors.index.json";
constexpr const char* kHfConfigFile = "config.json";

struct HfExportOptions {
  std::string dtype = "bf16";  // "bf16" | "fp32"
  // A shard is closed before a tensor would take it past this size (a larger tensor gets a
  // shard of its own).
  double shard_mb = 4096;
};

// Writes out_dir (created; must not exist or be empty) from the checkpoint step directory
// step_dir, whose trainer.yaml gives the model. `progress` (null: quiet) gets lines of tensors
// written / total. Throws std::runtime_error naming the file and the tensor at fault.
void export_hf_checkpoint(const std::string& step_dir, const std::string& out_dir,
                          const HfExportOptions& options, std::ostream* progress);

// Reads hf_dir for the model of `recipe`, checking its config.json first, and writes the step-0
// checkpoint under checkpoints_dir (created; must not exist or be empty), which then holds
// step-00000000/ and `latest`. Returns the step directory. Warnings and progress go to
// `progress` (null: quiet). `comm`: an MpiComm of this process alone (the checkpoint is written
// through MPI-IO). Throws std::runtime_error naming the file and tensor (or config key) at fault.
std::string import_hf_checkpoint(parallel::Comm& comm, const std::string& hf_dir,
                                 const Recipe& recipe, const std::string& checkpoints_dir,
                                 std::ostream* progress);

// "model-00002-of-00005.safetensors" (k counts from 1).
std::string hf_shard_name(int64_t k, int64_t n);

}  // namespace tessera::trainer
