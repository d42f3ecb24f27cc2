// Hugging Face checkpoints end to end on a small MHA model: export then import gives the
// parameters back bit for bit in fp32 (and bf16's rounding in bf16) as a step-0 checkpoint that
// the resume path reads; fp8 block-scaled weights import as fp8 x their block's scale; bad
// directories fail naming the tensor, the file or the config key.
// MPI (for the checkpoint writer on testing::Self()) is initialised by checkpoint_test.cc's
// global test environment, in the same test binary.
#include "trainer/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "tests/trainer/checkpoint_harness.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/model.h"
#include "trainer/safetensors.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Values = std::map<std::string, std::vector<float>>;

// vocab 260 and inter_dim 130 make fp8 weights of several 128x128 blocks, full and partial.
Recipe SmallRecipe() {
  Recipe r = testing::SmallRecipe();
  r.model.vocab_size = 260;
  r.model.inter_dim = 130;
  return r;
}

fs::path FreshDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("tessera_hf_" + name);
  fs::remove_all(dir);
  return dir;
}

// A checkpoint of r's model (step 9) whose parameters and moments are random floats of many
// magnitudes. Returns the step directory; `params` gets the parameter values by name.
std::string WriteCheckpoint(const Recipe& r, const fs::path& dir, Values& params) {
  const std::vector<CheckpointTensor> tensors = checkpoint_tensors(r.model);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> exponent(-30, 10);
  Values all;
  std::vector<TensorSlice> owned;
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::vector<float>& v = all[tensors[i].name];
    v.resize(static_cast<size_t>(tensors[i].numel()));
    for (float& x : v) x = std::ldexp(normal(rng), exponent(rng));
    owned.push_back({static_cast<int>(i), 0, tensors[i].numel(), v.data()});
  }
  for (const ParamDesc& d : Model::WholeModelParams(r.model)) params[d.name] = all.at(d.name);
  return write_checkpoint(testing::Self(), dir.string(), tensors, owned, {9, 900, 1, 5, 9, 1}, r,
                          2);
}

std::vector<float> ReadDataset(const std::string& step_dir, const std::string& name,
                               const kernels::Shape& shape) {
  H5File f((fs::path(step_dir) / "model.h5").string(), H5File::Mode::kReadOnly);
  std::vector<float> v(static_cast<size_t>(kernels::shape_numel(shape)));
  f.read_f32(name, shape, v.data());
  return v;
}

json ReadJson(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void ExpectBitEqual(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i])) << what << " [" << i << "]";
  }
}

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// Every tensor of an HF directory (through its index), as raw entries.
struct RawTensor {
  SafetensorsTensorSpec spec;
  std::vector<uint8_t> bytes;
};
std::vector<RawTensor> ReadAll(const fs::path& hf_dir) {
  std::vector<RawTensor> out;
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers;
  const json index = ReadJson(hf_dir / kHfIndexFile);
  for (const auto& [name, file] : index["weight_map"].items()) {
    auto& r = readers[file.get<std::string>()];
    if (!r) r = std::make_unique<SafetensorsReader>((hf_dir / file.get<std::string>()).string());
    const SafetensorsEntry& e = r->entry(name);
    out.push_back({{name, e.dtype, e.shape}, r->read_bytes(name)});
  }
  return out;
}

// A hand-made HF directory: config.json from `config_from`, `tensors` in one model.safetensors.
fs::path WriteLoneFileDir(const std::string& name, const fs::path& config_from,
                          const std::vector<RawTensor>& tensors) {
  const fs::path dir = FreshDir(name);
  fs::create_directories(dir);
  fs::copy_file(config_from / kHfConfigFile, dir / kHfConfigFile);
  std::vector<SafetensorsTensorSpec> specs;
  for (const RawTensor& t : tensors) specs.push_back(t.spec);
  SafetensorsWriter w((dir / "model.safetensors").string(), specs);
  for (const RawTensor& t : tensors) w.write_bytes(t.bytes.data(), t.bytes.size());
  w.close();
  return dir;
}

TEST(HfCheckpoint, ExportImportRoundTripIsBitExactInFp32) {
  const Recipe r = SmallRecipe();
  Values params;
  const std::string step_dir = WriteCheckpoint(r, FreshDir("fp32_ckpt"), params);
  const fs::path hf = FreshDir("fp32_hf");
  std::ostringstream progress;
  export_hf_checkpoint(step_dir, hf.string(), {"fp32", /*shard_mb=*/0.01}, &progress);
  EXPECT_NE(progress.str().find("tensors written"), std::string::npos);

  // Several shards, named and indexed as HF does; total_size counts the tensor bytes.
  const json index = ReadJson(hf / kHfIndexFile);
  std::set<std::string> files;
  uint64_t bytes = 0;
  for (const auto& [name, file] : index["weight_map"].items()) {
    files.insert(file.get<std::string>());
    bytes += SafetensorsReader((hf / file.get<std::string>()).string()).entry(name).nbytes();
  }
  EXPECT_GT(files.size(), 2u);
  EXPECT_TRUE(files.count(hf_shard_name(1, static_cast<int64_t>(files.size()))));
  EXPECT_EQ(hf_shard_name(2, 5), "model-00002-of-00005.safetensors");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), bytes);
  EXPECT_EQ(ReadJson(hf / kHfConfigFile)["torch_dtype"], "float32");
  // Expert rows are HF tensors of their own.
  const std::string expert = "model.layers.1.mlp.experts.2.up_proj.weight";
  const std::vector<float> row = SafetensorsReader((hf / index["weight_map"][expert].get<std::string>()).string())
                                     .read_floats(expert, {4, 8});
  const std::vector<float>& w3 = params.at("layers.1.moe.experts.w3");
  ExpectBitEqual(row, std::vector<float>(w3.begin() + 2 * 32, w3.begin() + 3 * 32), expert);

  const fs::path out = FreshDir("fp32_import");
  const std::string imported =
      import_hf_checkpoint(testing::Self(), hf.string(), r, out.string(), nullptr);
  EXPECT_EQ(fs::path(imported).filename(), "step-00000000");
  EXPECT_EQ(resolve_checkpoint(out.string()), imported);
  EXPECT_TRUE(verify_checkpoint(imported).empty());
  const CheckpointInfo info = read_checkpoint_info(imported);
  EXPECT_EQ(info.meta.step, 0);
  EXPECT_EQ(info.meta.optimizer_step, 0);
  EXPECT_EQ(info.meta.tokens_seen, 0);
  EXPECT_EQ(info.meta.loader_epoch, 0u);
  EXPECT_EQ(info.meta.loader_cursor, 0u);
  for (const CheckpointTensor& t : checkpoint_tensors(r.model)) {
    const std::vector<float> v = ReadDataset(imported, t.name, t.shape);
    if (params.count(t.name)) {
      ExpectBitEqual(v, params.at(t.name), t.name);
    } else {  // an AdamW moment
      ExpectBitEqual(v, std::vector<float>(v.size(), 0.0f), t.name);
    }
  }

  // What resume does: a model and its ZeRO optimizer read the checkpoint.
  auto comms = parallel::FakeComm::create_world(1);
  kernels::CpuBackend cpu;
  Model model(r.model, cpu);
  ZeroOptimizer optimizer(r.optimizer, model.params(), *comms[0], *comms[0]);
  const std::vector<CheckpointTensor> tensors = checkpoint_tensors(r.model);
  CheckpointSlices slices(tensors, model.params(), optimizer);
  EXPECT_EQ(
      read_checkpoint(testing::Self(), imported, tensors, slices.reads(), slices.owned()).step, 0);
  const int head = model.params().index("head.weight");
  EXPECT_EQ(model.params().value_ptr(head)[17], params.at("head.weight")[17]);
}

TEST(HfCheckpoint, MlaModelRoundTripsBitExact) {
  for (int64_t q_lora_rank : {0, 4}) {
    SCOPED_TRACE("q_lora_rank " + std::to_string(q_lora_rank));
    Recipe r = SmallRecipe();
    r.model.attention = "mla";
    r.model.q_lora_rank = q_lora_rank;
    r.model.kv_lora_rank = 6;
    r.model.qk_nope_head_dim = 4;
    r.model.qk_rope_head_dim = 2;
    r.model.v_head_dim = 3;
    Values params;
    const std::string step_dir = WriteCheckpoint(r, FreshDir("mla_ckpt"), params);
    const fs::path hf = FreshDir("mla_hf");
    export_hf_checkpoint(step_dir, hf.string(), {"fp32", 4096}, nullptr);
    const json config = ReadJson(hf / kHfConfigFile);
    EXPECT_FALSE(config.contains("tessera_attention"));
    EXPECT_EQ(config["kv_lora_rank"], 6);
    EXPECT_EQ(config["q_lora_rank"], q_lora_rank ? json(q_lora_rank) : json());
    SafetensorsReader shard((hf / hf_shard_name(1, 1)).string());
    // [kv_lora_rank + qk_rope_head_dim, dim] and [n_heads * (qk_nope + v_head), kv_lora_rank].
    EXPECT_EQ(shard.entry("model.layers.1.self_attn.kv_a_proj_with_mqa.weight").shape,
              (kernels::Shape{8, 8}));
    EXPECT_EQ(shard.entry("model.layers.1.self_attn.kv_b_proj.weight").shape, (kernels::Shape{14, 6}));
    EXPECT_EQ(shard.has("model.layers.0.self_attn.q_a_proj.weight"), q_lora_rank > 0);
    EXPECT_EQ(shard.has("model.layers.0.self_attn.q_proj.weight"), q_lora_rank == 0);

    const std::string imported = import_hf_checkpoint(testing::Self(), hf.string(), r,
                                                      FreshDir("mla_import").string(), nullptr);
    for (const ParamDesc& d : Model::WholeModelParams(r.model)) {
      ExpectBitEqual(ReadDataset(imported, d.name, d.global_shape()), params.at(d.name), d.name);
    }
  }
}

// MTP module 0 is HF layer n_layers (2) with copies of the embedding and head; import checks
// the copies against the main tensors, warns when they differ and keeps the main ones.
TEST(HfCheckpoint, MtpModuleRoundTripsWithTiedCopies) {
  Recipe r = SmallRecipe();
  r.model.attention = "mla";
  r.model.q_lora_rank = 4;
  r.model.mtp_depth = 1;
  Values params;
  const std::string step_dir = WriteCheckpoint(r, FreshDir("mtp_ckpt"), params);
  ASSERT_TRUE(params.count("mtp.0.block.moe.experts.w2"));
  const fs::path hf = FreshDir("mtp_hf");
  export_hf_checkpoint(step_dir, hf.string(), {"fp32", 4096}, nullptr);
  EXPECT_EQ(ReadJson(hf / kHfConfigFile)["num_nextn_predict_layers"], 1);
  SafetensorsReader shard((hf / hf_shard_name(1, 1)).string());
  ExpectBitEqual(shard.read_floats("model.layers.2.embed_tokens.weight", {260, 8}),
                 params.at("embed.weight"), "embed copy");
  ExpectBitEqual(shard.read_floats("model.layers.2.shared_head.head.weight", {260, 8}),
                 params.at("head.weight"), "head copy");
  ExpectBitEqual(shard.read_floats("model.layers.2.shared_head.norm.weight", {8}),
                 params.at("mtp.0.norm.weight"), "mtp norm");
  ExpectBitEqual(shard.read_floats("model.layers.2.eh_proj.weight", {8, 16}),
                 params.at("mtp.0.eh_proj.weight"), "eh_proj");
  const std::vector<float>& w2 = params.at("mtp.0.block.moe.experts.w2");
  ExpectBitEqual(shard.read_floats("model.layers.2.mlp.experts.3.down_proj.weight", {8, 4}),
                 std::vector<float>(w2.end() - 32, w2.end()), "last MTP expert");

  std::ostringstream log;
  const std::string imported =
      import_hf_checkpoint(testing::Self(), hf.string(), r, FreshDir("mtp_import").string(), &log);
  EXPECT_EQ(log.str().find("warning"), std::string::npos) << log.str();
  for (const ParamDesc& d : Model::WholeModelParams(r.model)) {
    ExpectBitEqual(ReadDataset(imported, d.name, d.global_shape()), params.at(d.name), d.name);
  }

  // A copy that differs: a warning naming both; the main embedding is kept.
  std::vector<RawTensor> tensors = ReadAll(hf);
  for (RawTensor& t : tensors) {
    if (t.spec.name == "model.layers.2.embed_tokens.weight") t.bytes[5] ^= 0x40;
  }
  log.str("");
  const std::string kept =
      import_hf_checkpoint(testing::Self(), WriteLoneFileDir("mtp_differs", hf, tensors).string(),
                           r, FreshDir("mtp_differs_import").string(), &log);
  EXPECT_NE(log.str().find("warning"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("'model.layers.2.embed_tokens.weight' differs from "
                           "'model.embed_tokens.weight'"), std::string::npos) << log.str();
  ExpectBitEqual(ReadDataset(kept, "embed.weight", {260, 8}), params.at("embed.weight"), "embed");
  // Copies left out: nothing to check, nothing said.
  std::vector<RawTensor> without_copies;
  for (const RawTensor& t : tensors) {
    if (!t.spec.name.ends_with("embed_tokens.weight") || t.spec.name == "model.embed_tokens.weight") {
      if (t.spec.name != "model.layers.2.shared_head.head.weight") without_copies.push_back(t);
    }
  }
  log.str("");
  import_hf_checkpoint(testing::Self(),
                       WriteLoneFileDir("mtp_no_copies", hf, without_copies).string(), r,
                       FreshDir("mtp_no_copies_import").string(), &log);
  EXPECT_EQ(log.str().find("warning"), std::string::npos) << log.str();
}

TEST(HfCheckpoint, Bf16ExportRoundsWeightsAndKeepsRoutingBiasesF32) {
  const Recipe r = SmallRecipe();
  Values params;
  const std::string step_dir = WriteCheckpoint(r, FreshDir("bf16_ckpt"), params);
  const fs::path hf = FreshDir("bf16_hf");
  export_hf_checkpoint(step_dir, hf.string(), {}, nullptr);  // bf16, one shard
  EXPECT_EQ(ReadJson(hf / kHfConfigFile)["torch_dtype"], "bfloat16");
  SafetensorsReader shard((hf / hf_shard_name(1, 1)).string());
  EXPECT_EQ(shard.entry("model.layers.1.mlp.gate.e_score_correction_bias").dtype, "F32");
  EXPECT_EQ(shard.entry("model.layers.1.mlp.gate.weight").dtype, "BF16");
  EXPECT_EQ(shard.entry("model.norm.weight").dtype, "BF16");

  const std::string imported = import_hf_checkpoint(testing::Self(), hf.string(), r,
                                                    FreshDir("bf16_import").string(), nullptr);
  for (const ParamDesc& d : Model::WholeModelParams(r.model)) {
    std::vector<float> want = params.at(d.name);
    if (!d.name.ends_with("moe.gate.bias")) {
      for (float& x : want) x = bf16_to_float(float_to_bf16(x));
    }
    ExpectBitEqual(ReadDataset(imported, d.name, d.global_shape()), want, d.name);
  }
}

// fp8 code and block scale of element (i, j) of a hand-made weight: every code but NaN, both
// signs, and three anchors checked by hand; scales differ per 128x128 block.
uint8_t Fp8Code(int64_t i, int64_t j) {
  if (i == 0 && j == 0) return 0x38;    // 1.0
  if (i == 259 && j == 7) return 0x7E;  // 448
  if (i == 1 && j == 129) return 0xBC;  // -1.5
  return static_cast<uint8_t>(((i * 7 + j * 13) % 0x7F) | ((i + j) % 3 == 0 ? 0x80 : 0));
}
float BlockScale(int64_t bi, int64_t bj) { return 0.25f * static_cast<float>(1 + bi + 4 * bj); }

// `t` as F8_E4M3 with its "<name>_scale_inv"; the anchors get hand-picked codes.
std::vector<RawTensor> AsFp8(const RawTensor& t) {
  const int64_t rows = t.spec.shape[0], cols = t.spec.shape[1];
  RawTensor w{{t.spec.name, "F8_E4M3", t.spec.shape}, std::vector<uint8_t>(rows * cols)};
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) w.bytes[i * cols + j] = Fp8Code(i, j);
  }
  const int64_t br = (rows + 127) / 128, bc = (cols + 127) / 128;
  std::vector<float> scales(br * bc);
  for (int64_t bi = 0; bi < br; ++bi) {
    for (int64_t bj = 0; bj < bc; ++bj) scales[bi * bc + bj] = BlockScale(bi, bj);
  }
  RawTensor s{{t.spec.name + "_scale_inv", "F32", {br, bc}}, std::vector<uint8_t>(scales.size() * 4)};
  std::memcpy(s.bytes.data(), scales.data(), s.bytes.size());
  return {w, s};
}

TEST(HfCheckpoint, Fp8BlockScaledWeightsImportDequantised) {
  const Recipe r = SmallRecipe();
  Values params;
  const std::string step_dir = WriteCheckpoint(r, FreshDir("fp8_ckpt"), params);
  const fs::path hf = FreshDir("fp8_hf");
  export_hf_checkpoint(step_dir, hf.string(), {"fp32", 4096}, nullptr);
  // embed [260, 8]: 3 row blocks (the last of 4 rows); down_proj [8, 130]: 2 column blocks.
  const std::map<std::string, std::string> fp8 = {
      {"model.embed_tokens.weight", "embed.weight"},
      {"model.layers.0.mlp.down_proj.weight", "layers.0.ffn.w2.weight"}};
  std::vector<RawTensor> tensors;
  for (const RawTensor& t : ReadAll(hf)) {
    if (!fp8.count(t.spec.name)) {
      tensors.push_back(t);
      continue;
    }
    for (const RawTensor& q : AsFp8(t)) tensors.push_back(q);
  }
  const fs::path dir = WriteLoneFileDir("fp8_dir", hf, tensors);
  const std::string imported = import_hf_checkpoint(testing::Self(), dir.string(), r,
                                                    FreshDir("fp8_import").string(), nullptr);

  const std::vector<float> embed = ReadDataset(imported, "embed.weight", {260, 8});
  const std::vector<float> w2 = ReadDataset(imported, "layers.0.ffn.w2.weight", {8, 130});
  for (int64_t i = 0; i < 260; ++i) {
    for (int64_t j = 0; j < 8; ++j) {
      ASSERT_EQ(embed[i * 8 + j], fp8_e4m3_to_float(Fp8Code(i, j)) * BlockScale(i / 128, 0)) << i << "," << j;
    }
  }
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t j = 0; j < 130; ++j) {
      ASSERT_EQ(w2[i * 130 + j], fp8_e4m3_to_float(Fp8Code(i, j)) * BlockScale(0, j / 128)) << i << "," << j;
    }
  }
  // By hand: 1.0 x 0.25 (block 0, 0), 448 x 0.75 (block 2, 0), -1.5 x 1.25 (block 0, 1).
  EXPECT_EQ(embed[0], 0.25f);
  EXPECT_EQ(embed[259 * 8 + 7], 336.0f);
  EXPECT_EQ(w2[1 * 130 + 129], -1.875f);
  // The rest of the file's tensors came through as they were.
  ExpectBitEqual(ReadDataset(imported, "head.weight", {260, 8}), params.at("head.weight"), "head.weight");
}

TEST(HfCheckpoint, BadDirectoriesNameTheTensorFileOrKey) {
  const Recipe r = SmallRecipe();
  Values params;
  const std::string step_dir = WriteCheckpoint(r, FreshDir("bad_ckpt"), params);
  const fs::path hf = FreshDir("bad_hf");
  export_hf_checkpoint(step_dir, hf.string(), {"fp32", 4096}, nullptr);
  const std::vector<RawTensor> all = ReadAll(hf);
  auto import_error = [&](const fs::path& dir, const Recipe& recipe) {
    return ErrorOf([&] {
      import_hf_checkpoint(testing::Self(), dir.string(), recipe, FreshDir("bad_out").string(),
                           nullptr);
    });
  };
  auto without = [&](const std::string& name) {
    std::vector<RawTensor> out;
    for (const RawTensor& t : all) {
      if (t.spec.name != name) out.push_back(t);
    }
    return out;
  };

  // A missing tensor.
  std::string e = import_error(WriteLoneFileDir("missing", hf, without("model.norm.weight")), r);
  EXPECT_NE(e.find("'model.norm.weight' is missing"), std::string::npos) << e;
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  // A tensor the model does not have.
  std::vector<RawTensor> extra = all;
  extra.push_back({{"model.layers.7.input_layernorm.weight", "F32", {8}}, std::vector<uint8_t>(32)});
  e = import_error(WriteLoneFileDir("extra", hf, extra), r);
  EXPECT_NE(e.find("model.layers.7.input_layernorm.weight"), std::string::npos) << e;
  // A wrong shape: names tensor and file.
  std::vector<RawTensor> reshaped = all;
  for (RawTensor& t : reshaped) {
    if (t.spec.name == "lm_head.weight") t.spec.shape = {8, 260};
  }
  const fs::path reshaped_dir = WriteLoneFileDir("reshaped", hf, reshaped);
  e = import_error(reshaped_dir, r);
  EXPECT_NE(e.find("'lm_head.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find((reshaped_dir / "model.safetensors").string()), std::string::npos) << e;
  EXPECT_NE(e.find("[8, 260]"), std::string::npos) << e;
  // An fp8 weight without its scales.
  std::vector<RawTensor> unscaled = without("model.norm.weight");
  for (const RawTensor& t : all) {
    if (t.spec.name == "model.norm.weight") unscaled.push_back({{t.spec.name, "F8_E4M3", {8}}, std::vector<uint8_t>(8)});
  }
  e = import_error(WriteLoneFileDir("unscaled", hf, unscaled), r);
  EXPECT_NE(e.find("'model.norm.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("F8_E4M3"), std::string::npos) << e;
  std::vector<RawTensor> no_scale;
  for (const RawTensor& t : all) {
    if (t.spec.name == "lm_head.weight") {
      no_scale.push_back(AsFp8(t)[0]);
    } else {
      no_scale.push_back(t);
    }
  }
  e = import_error(WriteLoneFileDir("no_scale", hf, no_scale), r);
  EXPECT_NE(e.find("'lm_head.weight_scale_inv' are missing"), std::string::npos) << e;
  // An unsupported dtype.
  std::vector<RawTensor> f16 = without("model.norm.weight");
  f16.push_back({{"model.norm.weight", "F16", {8}}, std::vector<uint8_t>(16)});
  e = import_error(WriteLoneFileDir("f16", hf, f16), r);
  EXPECT_NE(e.find("'model.norm.weight': dtype F16"), std::string::npos) << e;
  // config.json against the recipe.
  Recipe other = r;
  other.model.moe_inter_dim = 6;
  e = import_error(hf, other);
  EXPECT_NE(e.find("moe_intermediate_size is 4 but the recipe's model.moe_inter_dim gives 6"),
            std::string::npos) << e;
  // Neither an index nor a lone file; an output directory in use.
  const fs::path empty = FreshDir("empty_hf");
  fs::create_directories(empty);
  fs::copy_file(hf / kHfConfigFile, empty / kHfConfigFile);
  EXPECT_NE(import_error(empty, r).find("not a Hugging Face checkpoint"), std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              import_hf_checkpoint(testing::Self(), hf.string(), r, hf.string(), nullptr);
            }).find("not empty"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { export_hf_checkpoint(step_dir, hf.string(), {}, nullptr); })
                .find("not empty"), std::string::npos);
}

}  // namespace
}  // namespace tessera::trainer
