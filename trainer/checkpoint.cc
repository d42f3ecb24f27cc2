#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "data/xxhash64.h"
#include "trainer/hdf5_io.h"
#include "trainer/model.h"

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

// Crash injection for tests: TESSERA_CHECKPOINT_CRASH=<point>[@<step>] kills this process at
// that point of the save (of that step only, when given).
void crash_point(const char* point, int64_t step) {
  const char* want = std::getenv("TESSERA_CHECKPOINT_CRASH");
  if (!want) return;
  const std::string w(want), p(point);
  if (w == p || w == p + "@" + std::to_string(step)) {
    std::fprintf(stderr, "tessera: TESSERA_CHECKPOINT_CRASH=%s: killing myself now\n", want);
    std::raise(SIGKILL);
  }
}

std::string hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string layout_text(const Recipe& r) {
  const ParallelConfig& p = r.parallel;
  std::ostringstream s;
  s << "pp=" << p.pp << " dp=" << p.dp << " ep=" << p.ep << " schedule=" << p.schedule
    << " micro_batches=" << p.micro_batches << " virtual_stages=" << p.virtual_stages;
  return s.str();
}

// trainer.yaml's last line: the XXH64 of every byte before it.
constexpr const char* kContentChecksumKey = "content_checksum";

std::string with_content_checksum(const std::string& text) {
  return text + kContentChecksumKey + ": " +
         data::format_checksum(data::xxh64(text.data(), text.size())) + "\n";
}

// Checks the content checksum of trainer.yaml's text; throws CheckpointDamaged naming the file.
// Format 2 files predate it: without the line they pass unchecked.
void check_content_checksum(const std::string& path, const std::string& text,
                            int64_t format_version) {
  const std::string marker = std::string("\n") + kContentChecksumKey + ":";
  const size_t at = text.rfind(marker);
  if (at == std::string::npos) {
    if (format_version < 3) return;
    throw CheckpointDamaged(path + ": no " + kContentChecksumKey +
                            " line (format_version " + std::to_string(format_version) +
                            " writes one last): the file was cut short or edited");
  }
  const std::string body = text.substr(0, at + 1);
  std::string line = text.substr(at + marker.size());
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  while (!line.empty() && line.front() == ' ') line.erase(0, 1);
  uint64_t want = 0;
  if (!data::parse_checksum(line, &want)) {
    throw CheckpointDamaged(path + ": malformed " + kContentChecksumKey + " '" + line +
                            "' (expected xxh64:<16 hex digits> on the last line)");
  }
  if (data::xxh64(body.data(), body.size()) != want) {
    throw CheckpointDamaged(path + ": " + kContentChecksumKey +
                            " mismatch: the file was edited or damaged after it was written");
  }
}

std::string trainer_yaml(const CheckpointMeta& meta, const Recipe& recipe,
                         const std::vector<CheckpointTensor>& tensors,
                         const std::vector<uint64_t>& checksums) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << kCheckpointFormatVersion;
  out << YAML::Key << "step" << YAML::Value << meta.step;
  out << YAML::Key << "tokens_seen" << YAML::Value << meta.tokens_seen;
  out << YAML::Key << "lr_schedule_step" << YAML::Value << meta.step;
  out << YAML::Key << "optimizer_step" << YAML::Value << meta.optimizer_step;
  out << YAML::Key << "loader" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epoch" << YAML::Value << meta.loader_epoch;
  out << YAML::Key << "cursor" << YAML::Value << meta.loader_cursor;
  out << YAML::EndMap;
  // Nothing draws random numbers after initialisation: data order comes from train.seed and the
  // loader state above, initialisation from train.seed.
  out << YAML::Key << "rng" << YAML::Value << "none in use after initialisation";
  out << YAML::Key << "layout" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "world_size" << YAML::Value << meta.world_size;
  out << YAML::Key << "description" << YAML::Value << layout_text(recipe);
  out << YAML::EndMap;
  out << YAML::Key << "checksums" << YAML::Value << YAML::BeginMap;
  for (size_t i = 0; i < tensors.size(); ++i) {
    out << YAML::Key << tensors[i].name << YAML::Value << hex(checksums[i]);
  }
  out << YAML::EndMap;
  out << YAML::Key << "recipe" << YAML::Value << YAML::Load(recipe_to_yaml(recipe));
  if (!meta.metrics_line.empty()) {
    out << YAML::Key << "metrics_line" << YAML::Value << YAML::DoubleQuoted << meta.metrics_line;
  }
  out << YAML::EndMap;
  return with_content_checksum(std::string(out.c_str()) + "\n");
}

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string("checkpoint: ") + what + " failed");
}

// Throws on every rank if `ok` is false on any rank; the message is this rank's own when it
// failed, else names the failing ranks' logs.
void agree(MPI_Comm comm, bool ok, const std::string& what, const std::string& mine) {
  int bad = ok ? 0 : 1, any = 0;
  check_mpi(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm), "MPI_Allreduce");
  if (!any) return;
  throw CheckpointDamaged(ok ? what + " failed on another rank (see its log)" : mine);
}

// model.h5's step attribute against trainer.yaml's: two files of one save agree.
void check_same_step(const H5File& file, const CheckpointInfo& info) {
  const int64_t step = file.read_attr_i64("step");
  if (step != info.meta.step) {
    throw CheckpointDamaged(file.path() + " is of step " + std::to_string(step) +
                            " but trainer.yaml says step " + std::to_string(info.meta.step));
  }
}

}  // namespace

std::vector<CheckpointTensor> checkpoint_tensors(const ModelConfig& config) {
  std::vector<CheckpointTensor> out;
  for (const ParamDesc& d : Model::WholeModelParams(config)) {
    out.push_back({d.name, d.global_shape()});
    if (d.trainable) {
      out.push_back({kExpAvgPrefix + d.name, d.global_shape()});
      out.push_back({kExpAvgSqPrefix + d.name, d.global_shape()});
    }
  }
  return out;
}

uint64_t slice_checksum(int64_t begin, const float* data, int64_t n) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i, sizeof(bits));
    // splitmix64 finaliser of (index, bits): every element counts, in any order of summation.
    uint64_t z = (static_cast<uint64_t>(begin + i) << 32 ^ bits) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    sum += z ^ (z >> 31);
  }
  return sum;
}

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string write_checkpoint(MPI_Comm comm, const std::string& checkpoints_dir,
                             const std::vector<CheckpointTensor>& tensors,
                             const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                             const Recipe& recipe, int64_t keep_last) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  const fs::path root(checkpoints_dir);
  const std::string name = checkpoint_name(meta.step);
  const fs::path tmp = root / (".tmp-" + name);
  const fs::path final_dir = root / name;
  std::string error;
  if (rank == 0) {
    try {
      fs::create_directories(root);
      fs::remove_all(tmp);
      fs::create_directories(tmp);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree(comm, error.empty(), "creating " + tmp.string(), error);

  // A failed save leaves no partial directory behind, on every rank's word.
  auto agree_or_clean = [&](bool ok, const std::string& what, const std::string& mine) {
    try {
      agree(comm, ok, what, mine);
    } catch (...) {
      std::error_code ec;
      if (rank == 0) fs::remove_all(tmp, ec);
      throw;
    }
  };
  std::vector<uint64_t> checksums(tensors.size(), 0);
  {
    H5File file((tmp / "model.h5").string(), comm);
    for (const CheckpointTensor& t : tensors) file.create_f32(t.name, t.shape);
    file.write_attr_i64("step", meta.step);
    file.write_attr_i64("format_version", kCheckpointFormatVersion);
    crash_point("created", meta.step);
    // A full disk fails the writes on some ranks only. The ranks compare outcomes before the
    // collective close: after a failed write HDF5's close diverges between ranks (rank 0 waits in
    // a barrier, the others in a broadcast, forever), so on any failure no rank closes: every
    // rank gives the file up and throws, and the error ends the job (the partial directory is
    // removed first). A rank that threw from a write used to skip the collectives after it.
    std::string write_error;
    try {
      for (const TensorSlice& s : owned) {
        file.write_f32_slice(tensors.at(s.tensor).name, s.begin, s.end, s.data);
        checksums[s.tensor] += slice_checksum(s.begin, s.data, s.end - s.begin);
      }
      crash_point("written", meta.step);
    } catch (const std::exception& e) {
      write_error = e.what();
    }
    const std::string model_h5 = (tmp / "model.h5").string();
    try {
      agree_or_clean(write_error.empty(), "writing " + model_h5, write_error);
    } catch (const std::exception& e) {
      file.abandon();
      throw CheckpointWriteFailed(e.what());
    }
    std::string close_error;
    try {
      file.close();
    } catch (const std::exception& e) {
      close_error = e.what();
    }
    agree_or_clean(close_error.empty(), "closing " + model_h5, close_error);
  }
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, checksums.data(), static_cast<int>(checksums.size()),
                          MPI_UINT64_T, MPI_SUM, comm),
            "MPI_Allreduce of the checksums");
  crash_point("closed", meta.step);

  if (rank == 0) {
    try {
      write_text_atomically(tmp / "trainer.yaml", trainer_yaml(meta, recipe, tensors, checksums));
      fsync_path(tmp / "model.h5");
      fsync_path(tmp);
      fs::remove_all(final_dir);  // a re-save of the same step replaces it whole
      fs::rename(tmp, final_dir);
      fsync_path(root);
      crash_point("renamed", meta.step);
      write_text_atomically(root / "latest", name + "\n");
      fsync_path(root);
      // Checkpoints of later steps belong to a run this one was resumed past (an abandoned
      // future): they go, so that retention and fallback only ever see this run's history. Then
      // retention keeps the newest keep_last.
      std::vector<std::string> steps;
      for (const auto& entry : fs::directory_iterator(root)) {
        const std::string n = entry.path().filename().string();
        if (!entry.is_directory() || n.rfind("step-", 0) != 0) continue;
        if (n > name) {
          fs::remove_all(entry.path());
        } else {
          steps.push_back(n);
        }
      }
      std::sort(steps.begin(), steps.end());
      for (size_t i = 0; i + keep_last < steps.size(); ++i) fs::remove_all(root / steps[i]);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_or_clean(error.empty(), "committing " + final_dir.string(), error);
  return final_dir.string();
}

CheckpointInfo read_checkpoint_info(const std::string& step_dir) {
  const fs::path path = fs::path(step_dir) / "trainer.yaml";
  if (!fs::is_regular_file(path)) throw CheckpointDamaged(path.string() + ": missing");
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    if (!in) throw CheckpointDamaged(path.string() + ": cannot read");
    text = all.str();
  }
  CheckpointInfo info;
  YAML::Node y;
  try {
    y = YAML::Load(text);
    info.format_version = y["format_version"].as<int64_t>();
  } catch (const std::exception& e) {
    throw CheckpointDamaged(path.string() + ": malformed (" + e.what() + ")");
  }
  if (info.format_version < kOldestCheckpointFormatVersion ||
      info.format_version > kCheckpointFormatVersion) {
    throw CheckpointDamaged(path.string() + ": format_version " +
                            std::to_string(info.format_version) + ", this tessera reads " +
                            std::to_string(kOldestCheckpointFormatVersion) + " to " +
                            std::to_string(kCheckpointFormatVersion));
  }
  check_content_checksum(path.string(), text, info.format_version);
  try {
    info.meta.step = y["step"].as<int64_t>();
    info.meta.tokens_seen = y["tokens_seen"].as<int64_t>();
    info.meta.optimizer_step = y["optimizer_step"].as<int64_t>();
    info.meta.loader_epoch = y["loader"]["epoch"].as<uint64_t>();
    info.meta.loader_cursor = y["loader"]["cursor"].as<uint64_t>();
    info.meta.world_size = y["layout"]["world_size"].as<int64_t>();
    info.layout = y["layout"]["description"].as<std::string>();
    if (y["metrics_line"]) info.meta.metrics_line = y["metrics_line"].as<std::string>();
    for (const auto& kv : y["checksums"]) {
      info.checksums[kv.first.as<std::string>()] =
          std::stoull(kv.second.as<std::string>(), nullptr, 16);
    }
    YAML::Emitter e;
    e << y["recipe"];
    info.recipe_yaml = e.c_str();
  } catch (const std::exception& e) {
    throw CheckpointDamaged(path.string() + ": malformed (" + e.what() + ")");
  }
  return info;
}

CheckpointMeta read_checkpoint(MPI_Comm comm, const std::string& step_dir,
                               const std::vector<CheckpointTensor>& tensors,
                               const std::vector<TensorSlice>& reads,
                               const std::vector<TensorSlice>& owned) {
  const std::string path = (fs::path(step_dir) / "model.h5").string();
  CheckpointInfo info;
  std::string error;
  bool damaged = false;
  try {
    info = read_checkpoint_info(step_dir);
    H5File file(path, H5File::Mode::kReadOnly);
    check_same_step(file, info);
    // Every rank checks every tensor's shape (metadata only), so a different model is reported
    // identically everywhere and never mistaken for damage.
    for (const CheckpointTensor& t : tensors) {
      if (!file.has(t.name)) throw CheckpointDamaged(path + ": missing dataset " + t.name);
      const std::vector<int64_t> shape = file.shape_of(t.name);
      if (shape != t.shape) {
        error = path + ": dataset " + t.name + " has shape " + kernels::shape_string(shape) +
                " but the model's is " + kernels::shape_string(t.shape) +
                " (the recipe's model differs from the checkpoint's)";
        break;
      }
    }
    if (error.empty()) {
      for (const TensorSlice& s : reads) {
        const CheckpointTensor& t = tensors.at(s.tensor);
        file.read_f32_slice(t.name, t.shape, s.begin, s.end, s.data);
      }
    }
  } catch (const std::exception& e) {
    damaged = true;
    error = e.what();
  }
  if (!damaged && !error.empty()) throw std::runtime_error(error);  // same on every rank
  agree(comm, !damaged, "reading " + path, error);

  std::vector<uint64_t> sums(tensors.size(), 0);
  for (const TensorSlice& s : owned) sums[s.tensor] += slice_checksum(s.begin, s.data, s.end - s.begin);
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_UINT64_T,
                          MPI_SUM, comm),
            "MPI_Allreduce of the checksums");
  std::string bad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto it = info.checksums.find(tensors[i].name);
    if (it == info.checksums.end() || it->second != sums[i]) {
      bad += (bad.empty() ? "" : ", ") + tensors[i].name;
    }
  }
  if (!bad.empty()) throw CheckpointDamaged(path + ": checksum mismatch in " + bad);
  return info.meta;
}

std::vector<std::string> verify_checkpoint(const std::string& step_dir) {
  std::vector<std::string> problems;
  CheckpointInfo info;
  try {
    info = read_checkpoint_info(step_dir);
  } catch (const std::exception& e) {
    return {e.what()};
  }
  const std::string path = (fs::path(step_dir) / "model.h5").string();
  try {
    const Recipe recipe = parse_recipe(info.recipe_yaml, step_dir + "/trainer.yaml");
    H5File file(path, H5File::Mode::kReadOnly);
    try {
      check_same_step(file, info);
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
    std::vector<float> data;
    for (const CheckpointTensor& t : checkpoint_tensors(recipe.model)) {
      try {
        // The shape comes from trainer.yaml's recipe: check it against model.h5's before it sizes
        // the buffer (a damaged recipe could ask for terabytes).
        const std::vector<int64_t> stored = file.shape_of(t.name);
        if (stored != t.shape) {
          problems.push_back(t.name + ": " + path + " holds shape " + kernels::shape_string(stored) +
                             " but trainer.yaml's recipe gives " + kernels::shape_string(t.shape));
          continue;
        }
        data.resize(static_cast<size_t>(t.numel()));
        file.read_f32_slice(t.name, t.shape, 0, t.numel(), data.data());
        auto it = info.checksums.find(t.name);
        if (it == info.checksums.end()) {
          problems.push_back(t.name + ": no checksum in trainer.yaml");
        } else if (slice_checksum(0, data.data(), t.numel()) != it->second) {
          problems.push_back(t.name + ": checksum mismatch (" + path + ")");
        }
      } catch (const std::exception& e) {
        problems.push_back(t.name + ": " + e.what());
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(e.what());
  }
  return problems;
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

std::vector<std::string> resume_candidates(const std::string& checkpoints_dir,
                                           std::vector<std::string>* skipped) {
  const fs::path root(checkpoints_dir);
  std::vector<std::string> out;
  if (!fs::is_directory(root)) return out;
  // "" when complete, else what is missing.
  auto missing = [](const fs::path& dir) -> std::string {
    if (!fs::is_directory(dir)) return "does not exist";
    const bool h5 = fs::is_regular_file(dir / "model.h5");
    const bool yaml = fs::is_regular_file(dir / "trainer.yaml");
    if (h5 && yaml) return "";
    if (!h5 && !yaml) return "no model.h5 and no trainer.yaml";
    return h5 ? "no trainer.yaml" : "no model.h5";
  };
  auto skip = [&](const std::string& what) {
    if (skipped) skipped->push_back(what);
  };
  std::string latest;
  if (std::ifstream in(root / "latest"); in >> latest) {
    if (const std::string why = missing(root / latest); why.empty()) {
      out.push_back((root / latest).string());
    } else {
      skip((root / latest).string() + " (named by " + (root / "latest").string() + "): " + why);
    }
  }
  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string n = entry.path().filename().string();
    if (!entry.is_directory() || n.rfind("step-", 0) != 0 || n == latest) continue;
    if (const std::string why = missing(entry.path()); why.empty()) {
      steps.push_back(n);
    } else {
      skip(entry.path().string() + ": " + why);
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const std::string& n : steps) out.push_back((root / n).string());
  return out;
}

int64_t load_checkpoint(const std::string& step_dir, ParamTable& params) {
  const CheckpointInfo info = read_checkpoint_info(step_dir);
  H5File file((fs::path(step_dir) / "model.h5").string(), H5File::Mode::kReadOnly);
  check_same_step(file, info);
  // HDF5 reads into host memory: a device's values go through a host copy. Every parameter here
  // is a whole tensor (one process), so its checksum is trainer.yaml's.
  std::string bad;
  params.update_values_on_host([&](float* values) {
    for (const ParamDesc& d : params.descs()) {
      file.read_f32(d.name, d.shape, values + d.offset);
      const auto it = info.checksums.find(d.name);
      if (it == info.checksums.end() ||
          slice_checksum(0, values + d.offset, d.numel()) != it->second) {
        bad += (bad.empty() ? "" : ", ") + d.name;
      }
    }
  });
  if (!bad.empty()) throw CheckpointDamaged(file.path() + ": checksum mismatch in " + bad);
  return info.meta.step;
}

}  // namespace tessera::trainer
