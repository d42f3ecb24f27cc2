#include "trainer/checkpoint/resume.h"

#include <filesystem>
#include <ostream>
#include <stdexcept>

#include "trainer/checkpoint/tensor_io.h"

namespace tessera::trainer {

CheckpointMeta resume_from_checkpoint(const std::string& resume, const Recipe& recipe,
                                      parallel::Comm& comm,
                                      const std::vector<CheckpointTensor>& tensors,
                                      const CheckpointSlices& slices, std::ostream& log,
                                      CheckpointEnv& env) {
  const bool automatic = resume == "auto";
  const std::string checkpoints = (std::filesystem::path(recipe.run.dir) / "checkpoints").string();
  std::vector<std::string> skipped;  // step directories missing a file, with why
  const std::vector<std::string> candidates =
      automatic ? resume_candidates(checkpoints, &skipped, env)
                : std::vector{resolve_checkpoint(resume, env)};
  for (const std::string& why : skipped) log << "tessera: --resume auto: skipping " << why << "\n";
  if (candidates.empty()) {
    log << "tessera: --resume auto: no " << (skipped.empty() ? "" : "complete ")
        << "checkpoint under " << checkpoints << "; starting fresh\n";
    return {};
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    try {
      const CheckpointMeta meta =
          read_checkpoint(comm, candidates[i], tensors, slices.reads(), slices.owned(), env);
      log << "tessera: resumed from " << candidates[i] << " (step " << meta.step << ", written by "
          << meta.world_size << " process(es))\n";
      return meta;
    } catch (const CheckpointDamaged& e) {
      if (!automatic || i + 1 == candidates.size()) throw;
      log << "tessera: checkpoint " << candidates[i] << " is damaged (" << e.what()
          << "); falling back to " << candidates[i + 1] << "\n";
    }
  }
  throw std::logic_error("resume_from_checkpoint: unreachable");
}

}  // namespace tessera::trainer
