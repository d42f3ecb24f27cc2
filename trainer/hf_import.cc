// `tessera checkpoint import`: hf_checkpoint.h's import_hf_checkpoint.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/hf_checkpoint.h"
#include "trainer/hf_config.h"
#include "trainer/hf_names.h"
#include "trainer/model.h"
#include "trainer/progress_counter.h"
#include "trainer/safetensors.h"

namespace tessera::trainer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kFp8Block = 128;  // DeepSeek-V3's weight_block_size [128, 128]

json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error(path.string() + ": not valid JSON: " + e.what());
  }
}

// The tensors of an HF directory by name, read as fp32, remembering which were used.
class HfDirectory {
 public:
  explicit HfDirectory(const fs::path& dir) : dir_(dir) {
    const fs::path index = dir / kHfIndexFile;
    if (fs::exists(index)) {
      source_ = index.string();
      const json j = read_json_file(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
        throw std::runtime_error(source_ + ": no \"weight_map\" object");
      }
      for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string()) throw std::runtime_error(source_ + ": weight_map '" + name + "' is not a file name");
        weight_map_[name] = file.get<std::string>();
      }
    } else if (fs::exists(dir / "model.safetensors")) {
      source_ = (dir / "model.safetensors").string();
      for (const SafetensorsEntry& e : reader("model.safetensors").entries()) {
        weight_map_[e.name] = "model.safetensors";
      }
    } else {
      throw std::runtime_error(dir.string() + ": neither " + kHfIndexFile +
                               " nor model.safetensors (not a Hugging Face checkpoint)");
    }
  }

  bool has(const std::string& name) const { return weight_map_.count(name) != 0; }

  // `name` as fp32 with shape `shape`: F32 and BF16 as stored, F8_E4M3 times the scale of its
  // 128x128 block from "<name>_scale_inv".
  std::vector<float> read(const std::string& name, const kernels::Shape& shape) {
    SafetensorsReader& r = reader_of(name);
    used_.insert(name);
    std::vector<float> values = r.read_floats(name, shape);
    if (r.entry(name).dtype != "F8_E4M3") return values;
    const std::string scale_name = name + "_scale_inv";
    if (shape.size() != 2) {
      throw std::runtime_error(r.path() + ": tensor '" + name + "': F8_E4M3 with shape " +
                               kernels::shape_string(shape) + "; block scales need a 2-D weight");
    }
    if (!has(scale_name)) {
      throw std::runtime_error(r.path() + ": tensor '" + name + "' is F8_E4M3 but its block " +
                               "scales '" + scale_name + "' are missing from " + source_);
    }
    const int64_t rows = shape[0], cols = shape[1];
    const int64_t block_cols = (cols + kFp8Block - 1) / kFp8Block;
    const std::vector<float> scales = reader_of(scale_name).read_floats(
        scale_name, {(rows + kFp8Block - 1) / kFp8Block, block_cols});
    used_.insert(scale_name);
    for (int64_t i = 0; i < rows; ++i) {
      const float* scale_row = scales.data() + (i / kFp8Block) * block_cols;
      for (int64_t j = 0; j < cols; ++j) values[i * cols + j] *= scale_row[j / kFp8Block];
    }
    return values;
  }

  // Names nothing has read, but for RoPE caches some exporters save.
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [name, file] : weight_map_) {
      if (!used_.count(name) && !name.ends_with("rotary_emb.inv_freq")) out.push_back(name);
    }
    return out;
  }

  const std::string& source() const { return source_; }

 private:
  SafetensorsReader& reader_of(const std::string& name) {
    const auto it = weight_map_.find(name);
    if (it == weight_map_.end()) {
      throw std::runtime_error(source_ + ": tensor '" + name + "' is missing");
    }
    try {
      return reader(it->second);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string(e.what()) + " (" + source_ + " puts '" + name +
                               "' there)");
    }
  }
  SafetensorsReader& reader(const std::string& file) {
    std::unique_ptr<SafetensorsReader>& r = readers_[file];
    if (!r) r = std::make_unique<SafetensorsReader>((dir_ / file).string());
    return *r;
  }

  fs::path dir_;
  std::string source_;                               // the index (or lone file), for messages
  std::map<std::string, std::string> weight_map_;    // HF name -> file
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers_;  // opened on first use
  std::set<std::string> used_;
};

float max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace

std::string import_hf_checkpoint(parallel::Comm& comm, const std::string& hf_dir,
                                 const Recipe& recipe, const std::string& checkpoints_dir,
                                 std::ostream* progress) {
  const fs::path config_path = fs::path(hf_dir) / kHfConfigFile;
  for (const std::string& w :
       check_hf_config(read_json_file(config_path), recipe.model, config_path.string())) {
    if (progress) *progress << "warning: " << w << "\n";
  }
  if (fs::exists(checkpoints_dir) && !fs::is_empty(checkpoints_dir)) {
    throw std::runtime_error(checkpoints_dir + ": exists and is not empty (import writes a new "
                             "checkpoints directory)");
  }
  HfDirectory hf(hf_dir);
  const HfNaming naming = hf_naming(recipe.model);
  const std::vector<ParamDesc> params = Model::WholeModelParams(recipe.model);
  const std::vector<HfTiedCopy> copies = hf_tied_copies(naming);
  int64_t total = 0;
  for (const ParamDesc& d : params) total += static_cast<int64_t>(hf_names_of(d.name, naming).size());
  for (const HfTiedCopy& c : copies) total += hf.has(c.hf_name) ? 1 : 0;
  ProgressCounter counter(progress, "tessera checkpoint import", total, "tensors read");

  std::map<std::string, std::vector<float>> values;  // tessera name -> global tensor
  for (const ParamDesc& d : params) {
    const std::vector<std::string> names = hf_names_of(d.name, naming);
    const kernels::Shape shape = d.global_shape();
    if (d.region != ParamRegion::kExpert) {
      values[d.name] = hf.read(names.at(0), shape);
      counter.advance();
      continue;
    }
    std::vector<float>& stacked = values[d.name];
    stacked.reserve(static_cast<size_t>(kernels::shape_numel(shape)));
    const kernels::Shape row(shape.begin() + 1, shape.end());
    for (const std::string& name : names) {
      const std::vector<float> expert = hf.read(name, row);
      stacked.insert(stacked.end(), expert.begin(), expert.end());
      counter.advance();
    }
  }
  for (const HfTiedCopy& c : copies) {
    if (!hf.has(c.hf_name)) continue;
    const std::vector<float>& main = values.at(c.tessera_name);
    const ParamDesc& d = *std::find_if(params.begin(), params.end(),
                                       [&](const ParamDesc& p) { return p.name == c.tessera_name; });
    const std::vector<float> copy = hf.read(c.hf_name, d.global_shape());
    counter.advance();
    if (copy != main && progress) {
      *progress << "warning: " << hf.source() << ": '" << c.hf_name << "' differs from '"
                << hf_names_of(c.tessera_name, naming).at(0) << "' (largest |difference| "
                << max_abs_difference(copy, main) << "); tessera ties them and uses the latter\n";
    }
  }
  if (const std::vector<std::string> unused = hf.unused(); !unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) list += " and " + std::to_string(unused.size() - 5) + " more";
    throw std::runtime_error(hf.source() + ": " + std::to_string(unused.size()) +
                             " tensor(s) are no parameter of the recipe's model: " + list);
  }

  // The step-0 checkpoint: parameters as read, AdamW moments zero (one shared zero buffer).
  const std::vector<CheckpointTensor> tensors = checkpoint_tensors(recipe.model);
  int64_t largest = 0;
  for (const CheckpointTensor& t : tensors) largest = std::max(largest, t.numel());
  std::vector<float> zeros(static_cast<size_t>(largest), 0.0f);
  std::vector<TensorSlice> owned;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& name = tensors[i].name;
    const bool moment = name.starts_with(kExpAvgPrefix) || name.starts_with(kExpAvgSqPrefix);
    float* data = moment ? zeros.data() : values.at(name).data();
    owned.push_back({static_cast<int>(i), 0, tensors[i].numel(), data});
  }
  if (progress) *progress << "tessera checkpoint import: writing " << checkpoints_dir << "\n";
  return write_checkpoint(comm, checkpoints_dir, tensors, owned, CheckpointMeta{}, recipe,
                          /*keep_last=*/1);
}

}  // namespace tessera::trainer
