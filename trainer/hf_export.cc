// `tessera checkpoint export --format hf`: hf_checkpoint.h's export_hf_checkpoint.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/hf_checkpoint.h"
#include "trainer/hf_config.h"
#include "trainer/hf_names.h"
#include "trainer/model.h"
#include "trainer/progress_counter.h"
#include "trainer/safetensors.h"

namespace tessera::trainer {

namespace fs = std::filesystem;

namespace {

// One HF tensor: elements [begin, end) of a model.h5 dataset (all of it, or one expert's rows).
struct ExportTensor {
  SafetensorsTensorSpec spec;
  std::string dataset;
  kernels::Shape dataset_shape;
  int64_t begin = 0, end = 0;
};

std::vector<ExportTensor> export_tensors(const ModelConfig& model, const std::string& dtype) {
  const HfNaming naming = hf_naming(model);
  const std::vector<ParamDesc> params = Model::WholeModelParams(model);
  std::vector<ExportTensor> out;
  auto add = [&](const std::string& hf_name, const ParamDesc& d, kernels::Shape shape,
                 int64_t begin) {
    // Routing biases move by bias_update_gamma steps that bf16 cannot resolve: always F32.
    const bool keep_f32 = dtype == "fp32" || d.name.ends_with("moe.gate.bias");
    const int64_t n = kernels::shape_numel(shape);
    out.push_back({{hf_name, keep_f32 ? "F32" : "BF16", std::move(shape)},
                   d.name, d.global_shape(), begin, begin + n});
  };
  for (const ParamDesc& d : params) {
    const std::vector<std::string> names = hf_names_of(d.name, naming);
    const kernels::Shape shape = d.global_shape();
    if (d.region != ParamRegion::kExpert) {
      add(names.at(0), d, shape, 0);
      continue;
    }
    // A stacked [n_experts, out, in] tensor: one HF tensor per expert row.
    const kernels::Shape row(shape.begin() + 1, shape.end());
    for (size_t e = 0; e < names.size(); ++e) {
      add(names[e], d, row, static_cast<int64_t>(e) * kernels::shape_numel(row));
    }
  }
  for (const HfTiedCopy& copy : hf_tied_copies(naming)) {
    for (const ParamDesc& d : params) {
      if (d.name == copy.tessera_name) add(copy.hf_name, d, d.global_shape(), 0);
    }
  }
  return out;
}

// Tensors (indices into `tensors`) per shard, in order; a shard closes before a tensor would
// take it past max_bytes.
std::vector<std::vector<size_t>> plan_shards(const std::vector<ExportTensor>& tensors,
                                             uint64_t max_bytes) {
  std::vector<std::vector<size_t>> shards;
  uint64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].spec.nbytes();
    if (shards.empty() || (!shards.back().empty() && bytes + n > max_bytes)) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(i);
    bytes += n;
  }
  return shards;
}

void write_json(const fs::path& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path, std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) throw std::runtime_error(path.string() + ": write failed");
}

}  // namespace

std::string hf_shard_name(int64_t k, int64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05lld-of-%05lld.safetensors", static_cast<long long>(k),
                static_cast<long long>(n));
  return buf;
}

void export_hf_checkpoint(const std::string& step_dir, const std::string& out_dir,
                          const HfExportOptions& options, std::ostream* progress) {
  if (options.dtype != "bf16" && options.dtype != "fp32") {
    throw std::runtime_error("export: dtype must be bf16 or fp32, got " + options.dtype);
  }
  if (!(options.shard_mb > 0)) throw std::runtime_error("export: shard size must be > 0 MiB");
  const CheckpointInfo info = read_checkpoint_info(step_dir);
  const Recipe recipe = parse_recipe(info.recipe_yaml, step_dir + "/trainer.yaml");
  const fs::path out(out_dir);
  if (fs::exists(out) && !fs::is_empty(out)) {
    throw std::runtime_error(out_dir + ": exists and is not empty (export writes a new directory)");
  }
  fs::create_directories(out);

  const std::vector<ExportTensor> tensors = export_tensors(recipe.model, options.dtype);
  const std::vector<std::vector<size_t>> shards =
      plan_shards(tensors, static_cast<uint64_t>(options.shard_mb * (1 << 20)));
  const H5File h5((fs::path(step_dir) / "model.h5").string(), H5File::Mode::kReadOnly);
  ProgressCounter counter(progress, "tessera checkpoint export", static_cast<int64_t>(tensors.size()),
                          "tensors written");
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total_bytes = 0;
  std::vector<float> values;
  // What export reads is checked against trainer.yaml's checksums as it goes (the optimizer's
  // datasets, which export skips, are not read): damaged weights are not exported.
  std::map<std::string, uint64_t> sums;
  std::map<std::string, int64_t> covered;
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string file = hf_shard_name(static_cast<int64_t>(k) + 1, static_cast<int64_t>(shards.size()));
    std::vector<SafetensorsTensorSpec> specs;
    for (size_t i : shards[k]) specs.push_back(tensors[i].spec);
    SafetensorsWriter writer((out / file).string(), specs, {{"format", "pt"}});
    for (size_t i : shards[k]) {
      const ExportTensor& t = tensors[i];
      values.resize(static_cast<size_t>(t.end - t.begin));
      h5.read_f32_slice(t.dataset, t.dataset_shape, t.begin, t.end, values.data());
      sums[t.dataset] += slice_checksum(t.begin, values.data(), t.end - t.begin);
      covered[t.dataset] += t.end - t.begin;
      writer.write_floats(values);
      weight_map[t.spec.name] = file;
      total_bytes += t.spec.nbytes();
      counter.advance();
    }
    writer.close();
  }
  for (const auto& [dataset, sum] : sums) {
    const auto want = info.checksums.find(dataset);
    int64_t numel = 1;
    for (const ExportTensor& t : tensors) {
      if (t.dataset == dataset) {
        numel = 1;
        for (int64_t d : t.dataset_shape) numel *= d;
        break;
      }
    }
    if (covered[dataset] != numel) continue;  // exported in part: its checksum covers more
    if (want == info.checksums.end() || want->second != sum) {
      std::error_code ec;
      fs::remove_all(out, ec);
      throw CheckpointDamaged(step_dir + ": " + dataset +
                              ": checksum mismatch (model.h5 differs from trainer.yaml); not "
                              "exported (`tessera checkpoint verify` lists every damaged dataset)");
    }
  }
  write_json(out / kHfConfigFile,
             hf_config_json(recipe.model, options.dtype == "bf16" ? "bfloat16" : "float32",
                            recipe.train.seq_len));
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes}};
  index["weight_map"] = std::move(weight_map);
  write_json(out / kHfIndexFile, index);  // last: its presence means the export finished
}

}  // namespace tessera::trainer
