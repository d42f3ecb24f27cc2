#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "trainer/hdf5_io.h"

namespace tessera::trainer {

namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path.string() + ": cannot open for fsync");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path.string() + ": fsync failed");
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(tmp.string() + ": write failed");
  }
  fsync_path(tmp);
  fs::rename(tmp, path);
}

std::string trainer_yaml(const CheckpointMeta& meta, const Recipe& recipe) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << kCheckpointFormatVersion;
  out << YAML::Key << "step" << YAML::Value << meta.step;
  out << YAML::Key << "tokens_seen" << YAML::Value << meta.tokens_seen;
  out << YAML::Key << "loader" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epoch" << YAML::Value << meta.loader_epoch;
  out << YAML::Key << "cursor" << YAML::Value << meta.loader_cursor;
  out << YAML::EndMap;
  out << YAML::Key << "layout" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "world_size" << YAML::Value << meta.world_size;
  out << YAML::Key << "pp" << YAML::Value << recipe.parallel.pp;
  out << YAML::Key << "dp" << YAML::Value << recipe.parallel.dp;
  out << YAML::Key << "ep" << YAML::Value << recipe.parallel.ep;
  out << YAML::EndMap;
  out << YAML::Key << "recipe" << YAML::Value << YAML::Load(recipe_to_yaml(recipe));
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& checkpoints_dir, ParamTable& params,
                            const CheckpointMeta& meta,
                            const Recipe& recipe, int64_t keep_last) {
  const fs::path root(checkpoints_dir);
  fs::create_directories(root);
  if (!params.has_moments()) {
    throw std::logic_error("save_checkpoint: the parameter table holds no optimizer moments");
  }
  const std::string name = checkpoint_name(meta.step);
  const fs::path tmp = root / (".tmp-" + name);
  const fs::path final_dir = root / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  {
    H5File file((tmp / "model.h5").string(), H5File::Mode::kCreate);
    const float* m = params.exp_avg().data<float>();
    const float* v = params.exp_avg_sq().data<float>();
    for (size_t i = 0; i < params.descs().size(); ++i) {
      const ParamDesc& d = params.descs()[i];
      file.write_f32(d.name, d.shape, params.value_ptr(static_cast<int>(i)));
      if (d.trainable) {
        file.write_f32("optimizer/exp_avg/" + d.name, d.shape, m + d.offset);
        file.write_f32("optimizer/exp_avg_sq/" + d.name, d.shape, v + d.offset);
      }
    }
    file.write_attr_i64("step", meta.step);
    file.write_attr_i64("format_version", kCheckpointFormatVersion);
    file.flush();
  }
  write_text_atomically(tmp / "trainer.yaml", trainer_yaml(meta, recipe));
  fsync_path(tmp / "model.h5");
  fsync_path(tmp);
  fs::remove_all(final_dir);  // a re-save of the same step replaces it whole
  fs::rename(tmp, final_dir);
  fsync_path(root);
  write_text_atomically(root / "latest", name + "\n");

  // Retention: keep the newest keep_last complete checkpoints.
  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && n.rfind("step-", 0) == 0) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + keep_last < steps.size(); ++i) fs::remove_all(root / steps[i]);
  return final_dir.string();
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  if (fs::is_regular_file(p) && p.filename() == "model.h5") return p.parent_path().string();
  if (fs::is_regular_file(p / "model.h5")) return p.string();
  for (const fs::path& latest : {p / "latest", p / "checkpoints" / "latest"}) {
    if (fs::is_regular_file(latest)) {
      std::ifstream in(latest);
      std::string name;
      in >> name;
      const fs::path dir = latest.parent_path() / name;
      if (fs::is_regular_file(dir / "model.h5")) return dir.string();
      throw std::runtime_error(latest.string() + " names " + name +
                               ", which has no model.h5");
    }
  }
  throw std::runtime_error(path + ": not a checkpoint (no model.h5 and no 'latest' file)");
}

int64_t load_checkpoint(const std::string& step_dir, ParamTable& params, bool with_optimizer) {
  if (with_optimizer && !params.has_moments()) {
    throw std::logic_error("load_checkpoint: the parameter table holds no optimizer moments");
  }
  H5File file((fs::path(step_dir) / "model.h5").string(), H5File::Mode::kReadOnly);
  float* m = with_optimizer ? params.exp_avg().data<float>() : nullptr;
  float* v = with_optimizer ? params.exp_avg_sq().data<float>() : nullptr;
  for (size_t i = 0; i < params.descs().size(); ++i) {
    const ParamDesc& d = params.descs()[i];
    file.read_f32(d.name, d.shape, params.value_ptr(static_cast<int>(i)));
    if (with_optimizer && d.trainable) {
      file.read_f32("optimizer/exp_avg/" + d.name, d.shape, m + d.offset);
      file.read_f32("optimizer/exp_avg_sq/" + d.name, d.shape, v + d.offset);
    }
  }
  return file.read_attr_i64("step");
}

}  // namespace tessera::trainer
