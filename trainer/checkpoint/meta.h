// trainer.yaml, a checkpoint's metadata: step, tokens seen, LR-schedule and optimizer positions,
// loader state, the recipe, the layout it ran with, format version and one checksum per dataset
// of model.h5; its last line, `content_checksum: xxh64:<hex>`, is the XXH64 of every byte before
// it, so an edited or damaged trainer.yaml is damage like a flipped byte in model.h5. Format 2
// (before the content checksum) is still read, unchecked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trainer/checkpoint/env.h"
#include "trainer/checkpoint/errors.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

constexpr int64_t kCheckpointFormatVersion = 3;
// The oldest format this tessera reads: 2, whose trainer.yaml has no content_checksum.
constexpr int64_t kOldestCheckpointFormatVersion = 2;

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

// trainer.yaml's text (format kCheckpointFormatVersion, its content checksum last), with
// checksums[i] the checksum of tensors[i].
std::string trainer_yaml_text(const CheckpointMeta& meta, const Recipe& recipe,
                              const std::vector<CheckpointTensor>& tensors,
                              const std::vector<uint64_t>& checksums);

// trainer.yaml of a step directory. Throws CheckpointDamaged if it is missing, unreadable,
// malformed, of an unknown format_version, or (format 3) its content checksum is missing or
// differs.
struct CheckpointInfo {
  CheckpointMeta meta;
  int64_t format_version = 0;
  std::map<std::string, uint64_t> checksums;  // dataset -> checksum
  std::string layout;                         // "pp=2 dp=2 ep=2 schedule=1f1b micro_batches=2 ..."
  std::string recipe_yaml;                    // the recipe the run used
};
CheckpointInfo read_checkpoint_info(const std::string& step_dir,
                                    CheckpointEnv& env = CheckpointEnv::Posix());

}  // namespace tessera::trainer
