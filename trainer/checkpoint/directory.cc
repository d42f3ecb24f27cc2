#include "trainer/checkpoint/directory.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "trainer/checkpoint/agreement.h"
#include "trainer/checkpoint/tensor_io.h"

namespace tessera::trainer {

namespace fs = std::filesystem;

namespace {

// Clean-up after a failed save: its own failure must not hide the save's error.
void remove_quietly(CheckpointEnv& env, const std::string& path) {
  try {
    env.RemoveAll(path);
  } catch (const std::exception&) {
  }
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string write_checkpoint(parallel::Comm& comm, const std::string& checkpoints_dir,
                             const std::vector<CheckpointTensor>& tensors,
                             const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                             const Recipe& recipe, int64_t keep_last, CheckpointEnv& env) {
  const int rank = comm.rank();
  const fs::path root(checkpoints_dir);
  const std::string name = checkpoint_name(meta.step);
  const std::string tmp = (root / (".tmp-" + name)).string();
  const std::string final_dir = (root / name).string();
  const std::string model_h5 = (fs::path(tmp) / "model.h5").string();

  // A failed save leaves no partial directory behind, on every rank's word. (A crash skips
  // this: the next save, or nobody, removes the temporary directory; resume never reads it.)
  auto agree_or_clean = [&](bool ok, const std::string& what, const std::string& mine) {
    try {
      agree<CheckpointSaveFailed>(comm, ok, what, mine);
    } catch (...) {
      if (rank == 0) remove_quietly(env, tmp);
      throw;
    }
  };
  std::string error;
  if (rank == 0) {
    try {
      env.CreateDir(root.string());
      env.RemoveAll(tmp);  // left by a crashed save
      env.CreateDir(tmp);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_clean(error.empty(), "creating " + tmp, error);

  std::vector<uint64_t> checksums;
  try {
    checksums = write_model_h5(comm, model_h5, tensors, owned, meta.step, env);
  } catch (const std::exception&) {  // agreed (CheckpointSaveFailed) or this rank's own
    if (rank == 0) remove_quietly(env, tmp);
    throw;
  }
  env.Reached(SavePoint::kClosed, meta.step);

  // Commit: trainer.yaml (durable), model.h5 and the directory synced, then renamed into place.
  if (rank == 0) {
    try {
      env.WriteFile((fs::path(tmp) / "trainer.yaml").string(),
                    trainer_yaml_text(meta, recipe, tensors, checksums));
      env.SyncFile(model_h5);
      env.SyncDir(tmp);
      env.RemoveAll(final_dir);  // a re-save of the same step replaces it whole
      env.Rename(tmp, final_dir);
      env.SyncDir(root.string());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_clean(error.empty(), "committing " + final_dir, error);
  env.Reached(SavePoint::kRenamed, meta.step);

  // The checkpoint is complete: `latest` names it, then the others are pruned. A failure here
  // fails the save, but leaves `latest` naming a complete checkpoint (this one or the previous).
  if (rank == 0) {
    try {
      write_file_atomically(env, (root / "latest").string(), name + "\n");
      env.SyncDir(root.string());
      // Checkpoints of later steps belong to a run this one was resumed past (an abandoned
      // future): they go, so that retention and fallback only ever see this run's history. Then
      // retention keeps the newest keep_last.
      std::vector<std::string> steps;
      for (const DirEntry& entry : env.ListDir(root.string())) {
        if (!entry.is_dir || entry.name.rfind("step-", 0) != 0) continue;
        if (entry.name > name) {
          env.RemoveAll((root / entry.name).string());
        } else {
          steps.push_back(entry.name);
        }
      }
      std::sort(steps.begin(), steps.end());
      for (size_t i = 0; i + keep_last < steps.size(); ++i) {
        env.RemoveAll((root / steps[i]).string());
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree<CheckpointSaveFailed>(comm, error.empty(), "updating " + (root / "latest").string(),
                              error);
  return final_dir;
}

std::string resolve_checkpoint(const std::string& path, CheckpointEnv& env) {
  const fs::path p(path);
  if (env.FileExists(p.string()) && p.filename() == "model.h5") return p.parent_path().string();
  if (env.FileExists((p / "model.h5").string())) return p.string();
  for (const fs::path& latest : {p / "latest", p / "checkpoints" / "latest"}) {
    if (env.FileExists(latest.string())) {
      std::istringstream in(env.ReadFile(latest.string()));
      std::string name;
      in >> name;
      const fs::path dir = latest.parent_path() / name;
      if (env.FileExists((dir / "model.h5").string())) return dir.string();
      throw std::runtime_error(latest.string() + " names " + name +
                               ", which has no model.h5");
    }
  }
  throw std::runtime_error(path + ": not a checkpoint (no model.h5 and no 'latest' file)");
}

std::vector<std::string> resume_candidates(const std::string& checkpoints_dir,
                                           std::vector<std::string>* skipped,
                                           CheckpointEnv& env) {
  const fs::path root(checkpoints_dir);
  std::vector<std::string> out;
  if (!env.DirExists(root.string())) return out;
  // "" when complete, else what is missing.
  auto missing = [&env](const fs::path& dir) -> std::string {
    if (!env.DirExists(dir.string())) return "does not exist";
    const bool h5 = env.FileExists((dir / "model.h5").string());
    const bool yaml = env.FileExists((dir / "trainer.yaml").string());
    if (h5 && yaml) return "";
    if (!h5 && !yaml) return "no model.h5 and no trainer.yaml";
    return h5 ? "no trainer.yaml" : "no model.h5";
  };
  auto skip = [&](const std::string& what) {
    if (skipped) skipped->push_back(what);
  };
  std::string latest;
  if (env.FileExists((root / "latest").string())) {
    std::istringstream in(env.ReadFile((root / "latest").string()));
    in >> latest;
  }
  if (!latest.empty()) {
    if (const std::string why = missing(root / latest); why.empty()) {
      out.push_back((root / latest).string());
    } else {
      skip((root / latest).string() + " (named by " + (root / "latest").string() + "): " + why);
    }
  }
  std::vector<std::string> steps;
  for (const DirEntry& entry : env.ListDir(root.string())) {
    const std::string& n = entry.name;
    if (!entry.is_dir || n.rfind("step-", 0) != 0 || n == latest) continue;
    if (const std::string why = missing(root / n); why.empty()) {
      steps.push_back(n);
    } else {
      skip((root / n).string() + ": " + why);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const std::string& n : steps) out.push_back((root / n).string());
  return out;
}

}  // namespace tessera::trainer
