// Recipe loading: defaults, every class of bad input (each error must name the key and the file
// or --set it came from), overrides, and the dump round trip.
#include "trainer/recipe.h"
#include "tests/recipes_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace tessera::trainer {
namespace {

namespace fs = std::filesystem;
using Settings = std::vector<std::pair<std::string, std::string>>;  // dotted key -> YAML text

const char* const kSectionOrder[] = {"run",       "model",    "train",     "parallel",   "data",
                                     "optimizer", "schedule", "precision", "checkpoint", "logging",
                                     "slurm"};

class RecipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "-" + info->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    dir_ = fs::temp_directory_path() / ("tessera-recipe-" + std::to_string(getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // A valid minimal recipe (only data.path) plus `settings`, grouped into sections.
  std::string write_recipe(const Settings& settings, const std::string& name = "r.yaml") const {
    Settings all = {{"data.path", "data-cache/test"}};
    for (const auto& kv : settings) all.push_back(kv);
    std::map<std::string, std::vector<std::string>> by_section;
    std::vector<std::string> order;
    for (const auto& [key, value] : all) {
      const std::string section = key.substr(0, key.find('.'));
      if (!by_section.count(section)) order.push_back(section);
      const std::string line =
          "  " + key.substr(key.find('.') + 1) + ":" + (value.empty() ? "" : " " + value);
      auto& lines = by_section[section];
      // A later setting of the same key replaces the earlier one (no duplicate keys).
      const std::string prefix = line.substr(0, line.find(':') + 1);
      std::erase_if(lines, [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
      lines.push_back(line);
    }
    std::string text = "# test recipe\n";
    for (const auto& section : order) {
      text += section + ":\n";
      for (const auto& line : by_section[section]) text += line + "\n";
    }
    return write(name, text);
  }

  // load_recipe must throw; returns the message.
  static std::string load_error(const std::string& path,
                                const std::vector<std::string>& overrides = {}) {
    try {
      load_recipe(path, overrides);
    } catch (const RecipeError& e) {
      return e.what();
    }
    ADD_FAILURE() << "load_recipe(" << path << ") did not throw";
    return "";
  }

  fs::path dir_;
};

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

// ---- Defaults and the file itself ----

TEST_F(RecipeTest, MissingKeysTakeDefaults) {
  const std::string path = write_recipe({});
  const Recipe r = load_recipe(path);
  Recipe expected;
  expected.source = path;
  expected.data.path = "data-cache/test";
  EXPECT_EQ(r, expected);
  EXPECT_EQ(r.model.dim, 128);
  EXPECT_EQ(r.parallel.schedule, "1f1b");
  EXPECT_DOUBLE_EQ(r.optimizer.beta2, 0.95);
  EXPECT_FALSE(r.checkpoint.async);
}

TEST_F(RecipeTest, EmptySectionKeepsDefaults) {
  const std::string path = write("r.yaml", "model:\ndata:\n  path: d\n");
  EXPECT_EQ(load_recipe(path).model, ModelConfig{});
}

TEST_F(RecipeTest, DataPathIsRequired) {
  const std::string path = write("r.yaml", "model:\n  dim: 64\n");
  const std::string msg = load_error(path);
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "data.path: required key is missing");
  EXPECT_CONTAINS(load_error(write("empty.yaml", "")), "data.path: required");
}

TEST_F(RecipeTest, MissingFileAndDirectory) {
  const std::string missing = (dir_ / "nope.yaml").string();
  EXPECT_CONTAINS(load_error(missing), missing);
  EXPECT_CONTAINS(load_error(missing), "cannot open");
  EXPECT_CONTAINS(load_error(dir_.string()), "is a directory");
}

TEST_F(RecipeTest, SyntaxErrorNamesFileLineAndColumn) {
  const std::string path = write("r.yaml", "data:\n  path: d\nmodel:\n  dim: [64\n");
  const std::string msg = load_error(path);
  EXPECT_CONTAINS(msg, path + ": YAML syntax error at line ");
  EXPECT_CONTAINS(msg, "column");
  const std::string bad_map = write("b.yaml", "data:\n  path: d\n dim: 3\n");
  EXPECT_CONTAINS(load_error(bad_map), "line 3");
}

TEST_F(RecipeTest, TopLevelAndSectionsMustBeMaps) {
  const std::string list = write("list.yaml", "- model\n- data\n");
  EXPECT_CONTAINS(load_error(list), list + ": the top level must be a map");
  const std::string scalar_section = write("s.yaml", "data:\n  path: d\nmodel: 3\n");
  const std::string msg = load_error(scalar_section);
  EXPECT_CONTAINS(msg, scalar_section + ": model: expected a map of keys, got '3'");
  const std::string list_section = write("l.yaml", "data:\n  path: d\ntrain: [1, 2]\n");
  EXPECT_CONTAINS(load_error(list_section), "train: expected a map of keys, got a list");
}

TEST_F(RecipeTest, MultipleDocumentsAreAnError) {
  const std::string path = write("r.yaml", "data:\n  path: d\n---\nmodel:\n  dim: 3\n");
  EXPECT_CONTAINS(load_error(path), path + ": expected one YAML document, found 2");
}

TEST_F(RecipeTest, SourceIsThePath) {
  const std::string path = write_recipe({});
  EXPECT_EQ(load_recipe(path).source, path);
}

// ---- Unknown and duplicate keys ----

TEST_F(RecipeTest, UnknownKeySuggestsClosest) {
  const std::string path = write_recipe({{"model.dimm", "64"}});
  const std::string msg = load_error(path);
  EXPECT_CONTAINS(msg, path + ": model.dimm: unknown key (did you mean model.dim?)");
  EXPECT_CONTAINS(msg, "line ");
}

TEST_F(RecipeTest, UnknownKeyTransposition) {
  EXPECT_CONTAINS(load_error(write_recipe({{"train.setps", "5"}})), "did you mean train.steps?");
}

TEST_F(RecipeTest, UnknownKeyWithoutNearMatchHasNoSuggestion) {
  const std::string path = write_recipe({{"model.banana", "1"}});
  const std::string msg = load_error(path);
  EXPECT_CONTAINS(msg, path + ": model.banana: unknown key");
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST_F(RecipeTest, UnknownKeyInWrongSectionSuggestsTheRightOne) {
  EXPECT_CONTAINS(load_error(write_recipe({{"train.lr", "0.1"}})),
                  "train.lr: unknown key (did you mean optimizer.lr?)");
}

TEST_F(RecipeTest, UnknownSection) {
  const std::string typo = write("t.yaml", "data:\n  path: d\nmodle:\n  dim: 64\n");
  EXPECT_CONTAINS(load_error(typo), typo + ": modle: unknown section (did you mean model?)");
  const std::string other = write("o.yaml", "data:\n  path: d\nwhatever:\n  x: 1\n");
  const std::string msg = load_error(other);
  EXPECT_CONTAINS(msg, other + ": whatever: unknown section");
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
  const std::string bare = write("b.yaml", "data:\n  path: d\nseq_len: 64\n");
  EXPECT_CONTAINS(load_error(bare), "seq_len: unknown section (did you mean train.seq_len?)");
}

TEST_F(RecipeTest, DuplicateKeyAndSection) {
  const std::string key = write("k.yaml", "data:\n  path: d\nmodel:\n  dim: 64\n  dim: 32\n");
  EXPECT_CONTAINS(load_error(key), key + ": model.dim: duplicate key");
  const std::string section = write("s.yaml", "data:\n  path: d\ndata:\n  prefetch: 1\n");
  EXPECT_CONTAINS(load_error(section), section + ": data: duplicate section");
}

// ---- Types ----

struct BadType {
  std::string name;
  std::string key;
  std::string value;     // YAML text
  std::string expected;  // substring of the message after "<file>: <key>: "
};

void PrintTo(const BadType& c, std::ostream* os) { *os << c.name; }

class RecipeBadType : public RecipeTest, public ::testing::WithParamInterface<BadType> {};

TEST_P(RecipeBadType, IsRejectedNamingKeyAndFile) {
  const BadType& c = GetParam();
  const std::string path = write_recipe({{c.key, c.value}});
  const std::string msg = load_error(path);
  EXPECT_CONTAINS(msg, path + ": " + c.key + ": " + c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Types, RecipeBadType,
    ::testing::Values(
        BadType{"IntWord", "model.dim", "abc", "expected an integer, got 'abc'"},
        BadType{"IntFloat", "model.dim", "1.5", "expected an integer, got '1.5'"},
        BadType{"IntExponent", "model.dim", "1e3", "expected an integer, got '1e3'"},
        BadType{"IntBool", "model.dim", "true", "expected an integer, got 'true'"},
        BadType{"IntHex", "model.dim", "0x10", "expected an integer, got '0x10'"},
        BadType{"IntList", "model.dim", "[1, 2]", "expected an integer, got a list"},
        BadType{"IntMap", "model.dim", "{a: 1}", "expected an integer, got a map"},
        BadType{"IntQuoted", "model.dim", "\"128\"",
                "expected an integer, got the quoted string \"128\""},
        BadType{"IntEmpty", "model.dim", "", "expected an integer, got an empty value"},
        BadType{"IntOverflow", "train.steps", "99999999999999999999",
                "expected an integer, got '99999999999999999999' (out of range)"},
        BadType{"UintNegative", "train.seed", "-1", "expected a non-negative integer, got '-1'"},
        BadType{"UintFloat", "train.seed", "1.0", "expected a non-negative integer, got '1.0'"},
        BadType{"DoubleWord", "optimizer.lr", "abc", "expected a number, got 'abc'"},
        BadType{"DoubleBool", "optimizer.lr", "false", "expected a number, got 'false'"},
        BadType{"DoubleInf", "optimizer.lr", ".inf", "expected a number, got '.inf'"},
        BadType{"DoubleList", "optimizer.lr", "[0.1]", "expected a number, got a list"},
        BadType{"DoubleQuoted", "optimizer.lr", "'0.1'",
                "expected a number, got the quoted string \"0.1\""},
        BadType{"DoubleOverflow", "optimizer.lr", "1e999",
                "expected a number, got '1e999' (out of range)"},
        BadType{"BoolYes", "checkpoint.async", "yes", "expected true or false, got 'yes'"},
        BadType{"BoolOne", "checkpoint.async", "1", "expected true or false, got '1'"},
        BadType{"BoolQuoted", "checkpoint.async", "\"false\"",
                "expected true or false, got the quoted string \"false\""},
        BadType{"StringList", "run.dir", "[a, b]", "expected a string, got a list"},
        BadType{"StringMap", "parallel.schedule", "{x: 1}", "expected a string, got a map"}),
    [](const auto& info) { return info.param.name; });

TEST_F(RecipeTest, TypeErrorNamesLineAndColumn) {
  const std::string path = write("r.yaml", "data:\n  path: d\nmodel:\n  dim: 1.5\n");
  EXPECT_EQ(load_error(path),
            path + ": model.dim: expected an integer, got '1.5' (line 4, column 8)");
}

TEST_F(RecipeTest, AcceptedScalarForms) {
  const Recipe r = load_recipe(write_recipe({{"optimizer.lr", "1e-3"},
                                             {"optimizer.eps", "+2.5E-7"},
                                             {"optimizer.weight_decay", "1"},
                                             {"optimizer.beta1", ".5"},
                                             {"model.dim", "+64"},
                                             {"train.seed", "18446744073709551615"},
                                             {"run.dir", "123"},
                                             {"parallel.schedule", "'gpipe'"},
                                             {"checkpoint.async", "False"},
                                             {"model.n_layers", "!!int 3"}}));
  EXPECT_EQ(r.optimizer.lr, 1e-3);
  EXPECT_EQ(r.optimizer.eps, 2.5e-7);
  EXPECT_EQ(r.optimizer.weight_decay, 1.0);
  EXPECT_EQ(r.optimizer.beta1, 0.5);
  EXPECT_EQ(r.model.dim, 64);
  EXPECT_EQ(r.train.seed, 18446744073709551615ull);
  EXPECT_EQ(r.run.dir, "123");
  EXPECT_EQ(r.parallel.schedule, "gpipe");
  EXPECT_FALSE(r.checkpoint.async);
  EXPECT_EQ(r.model.n_layers, 3);
}

// ---- Impossible values: one case per rule ----

struct BadValue {
  std::string name;
  Settings settings;
  std::vector<std::string> needles;  // each must appear; the first key named leads the message
};

void PrintTo(const BadValue& c, std::ostream* os) { *os << c.name; }

class RecipeBadValue : public RecipeTest, public ::testing::WithParamInterface<BadValue> {};

TEST_P(RecipeBadValue, IsRejectedNamingKeyAndFile) {
  const BadValue& c = GetParam();
  const std::string path = write_recipe(c.settings);
  const std::string msg = load_error(path);
  EXPECT_EQ(msg.rfind(path + ": " + c.needles.front(), 0), 0u) << msg;
  for (const std::string& needle : c.needles) EXPECT_CONTAINS(msg, needle);
}

INSTANTIATE_TEST_SUITE_P(
    Run, RecipeBadValue,
    ::testing::Values(
        BadValue{"DirEmpty", {{"run.dir", "''"}}, {"run.dir", "must not be empty"}},
        BadValue{"CpuThreads", {{"run.cpu_threads", "0"}}, {"run.cpu_threads", "[1, 1024], got 0"}},
        BadValue{"CpuThreadsAbsurd",
                 {{"run.cpu_threads", "100000"}},
                 {"run.cpu_threads", "[1, 1024], got 100000"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Model, RecipeBadValue,
    ::testing::Values(
        BadValue{"VocabSize",
                 {{"model.vocab_size", "1"}},
                 {"model.vocab_size", "[2, 2147483647], got 1"}},
        BadValue{"VocabSizeAbsurd",
                 {{"model.vocab_size", "4000000000"}},
                 {"model.vocab_size", "[2, 2147483647], got 4000000000"}},
        BadValue{"Dim", {{"model.dim", "1"}}, {"model.dim", "[2, 1048576], got 1"}},
        BadValue{"DimAbsurd", {{"model.dim", "1000000000"}}, {"model.dim", "got 1000000000"}},
        BadValue{"NLayers", {{"model.n_layers", "0"}}, {"model.n_layers", "[1, 10000], got 0"}},
        BadValue{"NHeads", {{"model.n_heads", "0"}}, {"model.n_heads", ">= 1, got 0"}},
        BadValue{"HeadsDivideDim",
                 {{"model.dim", "128"}, {"model.n_heads", "5"}},
                 {"model.n_heads: 5 does not divide model.dim 128"}},
        BadValue{"HeadDimEven",
                 {{"model.dim", "12"}, {"model.n_heads", "4"}},
                 {"model.n_heads", "model.dim", "= 3 must be even"}},
        BadValue{"MlaOddRopeDim",
                 {{"model.attention", "mla"}, {"model.qk_rope_head_dim", "5"}},
                 {"model.qk_rope_head_dim: must be even (RoPE rotates pairs), got 5"}},
        BadValue{"MlaValueWiderThanQueryKey",
                 {{"model.attention", "mla"}, {"model.v_head_dim", "30"}},
                 {"model.v_head_dim: must be <= model.qk_nope_head_dim + model.qk_rope_head_dim (24"}},
        BadValue{"MlaZeroKvRank",
                 {{"model.attention", "mla"}, {"model.kv_lora_rank", "0"}},
                 {"model.kv_lora_rank", ">= 1, got 0"}},
        BadValue{"MtpNegativeDepth", {{"model.mtp_depth", "-1"}}, {"model.mtp_depth", ">= 0, got -1"}},
        BadValue{"AttentionUnknown",
                 {{"model.attention", "gqa"}},
                 {"model.attention", "unknown value 'gqa'", "allowed: mha"}},
        BadValue{"InterDim",
                 {{"model.inter_dim", "0"}},
                 {"model.inter_dim", "[1, 4194304], got 0"}},
        BadValue{"MoeInterDim",
                 {{"model.moe_inter_dim", "0"}},
                 {"model.moe_inter_dim", "[1, 4194304], got 0"}},
        BadValue{"NExpertsZero",
                 {{"model.n_experts", "0"}},
                 {"model.n_experts", "must be in [1, 256], got 0"}},
        BadValue{"NExpertsTooMany",
                 {{"model.n_experts", "257"}},
                 {"model.n_experts", "must be in [1, 256], got 257"}},
        BadValue{"NSharedExperts",
                 {{"model.n_shared_experts", "-1"}},
                 {"model.n_shared_experts", ">= 0, got -1"}},
        BadValue{"TopKZero", {{"model.top_k", "0"}}, {"model.top_k", ">= 1, got 0"}},
        BadValue{"TopKAboveExperts",
                 {{"model.n_experts", "8"}, {"model.top_k", "9"}},
                 {"model.top_k: must be <= model.n_experts (8), got 9"}},
        BadValue{"NGroupZero", {{"model.n_group", "0"}}, {"model.n_group", ">= 1, got 0"}},
        BadValue{"NGroupDividesExperts",
                 {{"model.n_experts", "8"}, {"model.n_group", "3"}},
                 {"model.n_group: 3 does not divide model.n_experts 8"}},
        BadValue{"GroupsNeedTwoExperts",
                 {{"model.n_experts", "8"}, {"model.n_group", "8"}, {"model.top_k", "1"}},
                 {"model.n_group", "model.n_experts", ">= 2 experts"}},
        BadValue{"TopkGroupZero", {{"model.topk_group", "0"}}, {"model.topk_group", ">= 1, got 0"}},
        BadValue{"TopkGroupAboveNGroup",
                 {{"model.n_group", "2"}, {"model.topk_group", "3"}},
                 {"model.topk_group: must be <= model.n_group (2), got 3"}},
        BadValue{"TopKAboveReachable",
                 {{"model.n_experts", "8"},
                  {"model.n_group", "4"},
                  {"model.topk_group", "1"},
                  {"model.top_k", "3"}},
                 {"model.top_k", "model.topk_group", "(1 * 8 / 4 = 2), got 3"}},
        BadValue{"RouteScale", {{"model.route_scale", "0"}}, {"model.route_scale", "> 0, got 0"}},
        BadValue{"FirstDenseNegative",
                 {{"model.first_dense_layers", "-1"}},
                 {"model.first_dense_layers", ">= 0, got -1"}},
        BadValue{"FirstDenseAboveLayers",
                 {{"model.n_layers", "2"}, {"model.first_dense_layers", "3"}},
                 {"model.first_dense_layers: must be <= model.n_layers (2), got 3"}},
        BadValue{"NormEps", {{"model.norm_eps", "0.0"}}, {"model.norm_eps", "> 0, got 0"}},
        BadValue{"RopeTheta", {{"model.rope_theta", "-1"}}, {"model.rope_theta", "> 0, got -1"}},
        BadValue{"InitStd", {{"model.init_std", "0"}}, {"model.init_std", "> 0, got 0"}},
        BadValue{"BiasUpdateGamma",
                 {{"model.bias_update_gamma", "-0.5"}},
                 {"model.bias_update_gamma", ">= 0, got -0.5"}},
        BadValue{"SeqAuxAlpha",
                 {{"model.seq_aux_alpha", "-1e-4"}},
                 {"model.seq_aux_alpha", ">= 0, got -1.0e-04"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Train, RecipeBadValue,
    ::testing::Values(
        BadValue{"Steps", {{"train.steps", "0"}}, {"train.steps", ">= 1, got 0"}},
        BadValue{"SeqLen", {{"train.seq_len", "0"}}, {"train.seq_len", "[1, 16777216], got 0"}},
        BadValue{"GlobalBatch",
                 {{"train.global_batch", "0"}},
                 {"train.global_batch", "[1, 1073741824], got 0"}},
        BadValue{"EvalEvery", {{"train.eval_every", "-1"}}, {"train.eval_every", ">= 0, got -1"}},
        BadValue{
            "EvalBatches", {{"train.eval_batches", "0"}}, {"train.eval_batches", ">= 1, got 0"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Parallel, RecipeBadValue,
    ::testing::Values(
        BadValue{"Pp", {{"parallel.pp", "0"}}, {"parallel.pp", ">= 1, got 0"}},
        BadValue{"Dp", {{"parallel.dp", "0"}}, {"parallel.dp", ">= 1, got 0"}},
        BadValue{"Ep", {{"parallel.ep", "0"}}, {"parallel.ep", ">= 1, got 0"}},
        BadValue{"MicroBatches",
                 {{"parallel.micro_batches", "0"}},
                 {"parallel.micro_batches", ">= 1, got 0"}},
        BadValue{"VirtualStages",
                 {{"parallel.virtual_stages", "0"}},
                 {"parallel.virtual_stages", ">= 1, got 0"}},
        BadValue{"EpDividesDp",
                 {{"parallel.dp", "4"}, {"parallel.ep", "3"}},
                 {"parallel.ep: 3 does not divide parallel.dp 4"}},
        BadValue{"EpDividesExperts",
                 {{"parallel.dp", "6"}, {"parallel.ep", "3"}, {"train.global_batch", "6"}},
                 {"parallel.ep: 3 does not divide model.n_experts 8"}},
        BadValue{"PpAboveLayers",
                 {{"model.n_layers", "2"}, {"parallel.pp", "3"}},
                 {"parallel.pp: must be <= model.n_layers (2), got 3"}},
        BadValue{"Schedule",
                 {{"parallel.schedule", "1fb1"}},
                 {"parallel.schedule", "unknown value '1fb1'", "dualpipev", "did you mean 1f1b?"}},
        BadValue{
            "GlobalBatchDivisible",
            {{"train.global_batch", "10"}, {"parallel.dp", "2"}, {"parallel.micro_batches", "4"}},
            {"train.global_batch: 10 is not divisible by parallel.dp * "
             "parallel.micro_batches (2 * 4 = 8)"}},
        BadValue{"VirtualStagesNeedInterleaved",
                 {{"parallel.virtual_stages", "2"}, {"parallel.schedule", "zb1p"}},
                 {"parallel.schedule: does not fit: parallel.schedule=zb1p runs one chunk per "
                  "stage (virtual stages need parallel.schedule=interleaved) but "
                  "parallel.virtual_stages=2"}},
        BadValue{"ChunksAboveLayers",
                 {{"model.n_layers", "3"},
                  {"parallel.pp", "2"},
                  {"parallel.schedule", "interleaved"},
                  {"parallel.virtual_stages", "2"},
                  {"parallel.micro_batches", "2"}},
                 {"parallel.pp: 2 stages x 2 model chunks per stage", "= 4 chunks exceed "
                  "model.n_layers 3 (every chunk needs at least one layer)"}},
        BadValue{"DualPipeVChunksAboveLayers",
                 {{"model.n_layers", "3"},
                  {"parallel.pp", "2"},
                  {"parallel.schedule", "dualpipev"},
                  {"parallel.micro_batches", "4"}},
                 {"parallel.pp: 2 stages x 2 model chunks per stage", "model.n_layers 3"}},
        BadValue{"StageLayersSum",
                 {{"parallel.pp", "2"}, {"parallel.stage_layers", "2,1"}},
                 {"parallel.stage_layers: parallel.stage_layers=[2, 1] sums to 3 but "
                  "model.n_layers=2"}},
        BadValue{"StageLayersCount",
                 {{"model.n_layers", "4"}, {"parallel.pp", "2"}, {"parallel.stage_layers", "4"}},
                 {"parallel.stage_layers: parallel.stage_layers=[4] has 1 entries but the "
                  "pipeline has 2 parts"}},
        BadValue{"StageLayersText",
                 {{"parallel.pp", "2"}, {"parallel.stage_layers", "one,1"}},
                 {"parallel.stage_layers: parallel.stage_layers='one,1' is not a "
                  "comma-separated list of layer counts"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Data, RecipeBadValue,
    ::testing::Values(
        BadValue{"PathEmpty", {{"data.path", "\"\""}}, {"data.path", "must not be empty"}},
        BadValue{"PathNull", {{"data.path", ""}}, {"data.path", "must not be empty"}},
        BadValue{"Prefetch", {{"data.prefetch", "-1"}}, {"data.prefetch", ">= 0, got -1"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Optimizer, RecipeBadValue,
    ::testing::Values(
        BadValue{"Name",
                 {{"optimizer.name", "sgd"}},
                 {"optimizer.name", "unknown value 'sgd'", "adamw"}},
        BadValue{"Lr", {{"optimizer.lr", "0"}}, {"optimizer.lr", "> 0, got 0"}},
        BadValue{"Beta1One", {{"optimizer.beta1", "1.0"}}, {"optimizer.beta1", "in [0, 1), got 1"}},
        BadValue{"Beta1Negative",
                 {{"optimizer.beta1", "-0.1"}},
                 {"optimizer.beta1", "in [0, 1), got -0.1"}},
        BadValue{"Beta2", {{"optimizer.beta2", "1"}}, {"optimizer.beta2", "in [0, 1), got 1"}},
        BadValue{"Eps", {{"optimizer.eps", "0"}}, {"optimizer.eps", "> 0, got 0"}},
        BadValue{"WeightDecay",
                 {{"optimizer.weight_decay", "-0.1"}},
                 {"optimizer.weight_decay", ">= 0, got -0.1"}},
        BadValue{
            "GradClip", {{"optimizer.grad_clip", "-1"}}, {"optimizer.grad_clip", ">= 0, got -1"}},
        BadValue{"StateDtype",
                 {{"optimizer.state_dtype", "fp16"}},
                 {"optimizer.state_dtype", "unknown value 'fp16'", "allowed: fp32, bf16"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Schedule, RecipeBadValue,
    ::testing::Values(
        BadValue{"Warmup", {{"schedule.warmup_steps", "-1"}}, {"schedule.warmup_steps", ">= 0"}},
        BadValue{"Decay",
                 {{"schedule.decay", "linear"}},
                 {"schedule.decay", "unknown value 'linear'", "cosine, constant"}},
        BadValue{"MinLrRatioAbove",
                 {{"schedule.min_lr_ratio", "1.5"}},
                 {"schedule.min_lr_ratio", "in [0, 1], got 1.5"}},
        BadValue{"MinLrRatioBelow",
                 {{"schedule.min_lr_ratio", "-0.1"}},
                 {"schedule.min_lr_ratio", "in [0, 1], got -0.1"}}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    PrecisionCheckpointLogging, RecipeBadValue,
    ::testing::Values(
        BadValue{"ComputeUnknown",
                 {{"precision.compute", "fp16"}},
                 {"precision.compute", "unknown value 'fp16'", "fp32"}},
        BadValue{"CheckpointEvery",
                 {{"checkpoint.every_steps", "-5"}},
                 {"checkpoint.every_steps", ">= 0, got -5"}},
        BadValue{"KeepLast", {{"checkpoint.keep_last", "0"}}, {"checkpoint.keep_last", ">= 1"}},
        BadValue{"LoggingEvery",
                 {{"logging.every_steps", "0"}},
                 {"logging.every_steps", ">= 1, got 0"}},
        BadValue{"TraceStepsNotANumber",
                 {{"logging.trace_steps", "five"}},
                 {"logging.trace_steps", "'five'", "not a step number"}},
        BadValue{"TraceStepsBackwards",
                 {{"logging.trace_steps", "6-5"}},
                 {"logging.trace_steps", "'6-5'", "first step 6 is after the last 5"}},
        BadValue{"TraceStepsZero",
                 {{"logging.trace_steps", "0-2"}},
                 {"logging.trace_steps", "'0-2'", "steps count from 1"}},
        BadValue{"TraceStepsTrailing",
                 {{"logging.trace_steps", "5-6x"}},
                 {"logging.trace_steps", "'5-6x'", "not a step number"}},
        BadValue{"TraceStepsPastTheEnd",
                 {{"logging.trace_steps", "9-12"}, {"train.steps", "10"}},
                 {"logging.trace_steps", "'9-12'", "train.steps = 10"}}),
    [](const auto& info) { return info.param.name; });

TEST_F(RecipeTest, TraceStepsAcceptsOneStepOrARange) {
  EXPECT_EQ(load_recipe(write_recipe({})).logging.trace_steps, "");
  EXPECT_EQ(load_recipe(write_recipe({{"logging.trace_steps", "7"}})).logging.trace_steps, "7");
  const Recipe r = load_recipe(write_recipe({{"train.steps", "6"}}),
                               {"logging.trace_steps=5-6"});
  EXPECT_EQ(r.logging.trace_steps, "5-6");
  // The error names the --set it came from.
  const std::string msg = load_error(write_recipe({}), {"logging.trace_steps=3-"});
  EXPECT_CONTAINS(msg, "--set logging.trace_steps=3-");
  EXPECT_CONTAINS(msg, "logging.trace_steps: '3-'");
}

// The limits themselves are allowed: the checks are not stricter than the rules.
TEST_F(RecipeTest, BoundaryValuesAreAccepted) {
  const Recipe r = load_recipe(write_recipe({
      {"model.dim", "64"},
      {"model.n_heads", "32"},  // head_dim 2
      {"model.n_experts", "8"},
      {"model.n_group", "4"},
      {"model.topk_group", "2"},
      {"model.top_k", "4"},  // = topk_group * n_experts / n_group
      {"model.n_shared_experts", "0"},
      {"model.n_layers", "6"},  // = pp x virtual_stages: one layer per model chunk
      {"model.first_dense_layers", "6"},
      {"model.bias_update_gamma", "0"},
      {"parallel.pp", "3"},
      {"parallel.dp", "4"},
      {"parallel.ep", "4"},
      {"parallel.micro_batches", "3"},  // interleaved: a multiple of pp
      {"train.global_batch", "12"},
      {"train.eval_every", "0"},
      {"parallel.schedule", "interleaved"},
      {"parallel.virtual_stages", "2"},
      {"optimizer.beta1", "0"},
      {"optimizer.grad_clip", "0"},
      {"schedule.min_lr_ratio", "1"},
      {"data.prefetch", "0"},
      {"checkpoint.keep_last", "1"},
  }));
  EXPECT_EQ(r.model.top_k, 4);
  EXPECT_EQ(r.parallel.virtual_stages, 2);
  const Recipe many =
      load_recipe(write_recipe({{"model.n_experts", "256"}, {"model.top_k", "256"}}));
  EXPECT_EQ(many.model.n_experts, 256);
}

// ---- Overrides ----

TEST_F(RecipeTest, OverridesApplyAfterTheFile) {
  const std::string path = write_recipe({{"model.dim", "64"}, {"run.dir", "runs/file"}});
  const Recipe r = load_recipe(
      path, {"model.dim=96", "optimizer.lr=1e-4", "parallel.schedule=gpipe",
             "checkpoint.keep_last=5", "run.dir = runs/a b", "train.seed=7", "model.dim=32"});
  EXPECT_EQ(r.model.dim, 32);  // the last --set of a key wins
  EXPECT_EQ(r.optimizer.lr, 1e-4);
  EXPECT_EQ(r.parallel.schedule, "gpipe");
  EXPECT_EQ(r.checkpoint.keep_last, 5);
  EXPECT_EQ(r.run.dir, "runs/a b");
  EXPECT_EQ(r.train.seed, 7u);
}

TEST_F(RecipeTest, OverrideSplitsAtFirstEquals) {
  const Recipe r = load_recipe(write_recipe({}), {"run.dir=runs/a=b"});
  EXPECT_EQ(r.run.dir, "runs/a=b");
}

TEST_F(RecipeTest, OverrideUnknownKey) {
  const std::string msg = load_error(write_recipe({}), {"model.dimm=3"});
  EXPECT_EQ(msg, "--set model.dimm=3: unknown key model.dimm (did you mean model.dim?)");
}

TEST_F(RecipeTest, OverrideBadType) {
  const std::string path = write_recipe({});
  EXPECT_EQ(load_error(path, {"model.dim=1.5"}),
            "--set model.dim=1.5: model.dim: expected an integer, got '1.5'");
  EXPECT_CONTAINS(load_error(path, {"checkpoint.async=yes"}),
                  "--set checkpoint.async=yes: checkpoint.async: expected true or false");
  EXPECT_CONTAINS(load_error(path, {"model.dim=[1"}),
                  "--set model.dim=[1: model.dim: cannot parse");
}

TEST_F(RecipeTest, OverrideWithoutEquals) {
  const std::string msg = load_error(write_recipe({}), {"model.dim"});
  EXPECT_CONTAINS(msg, "--set model.dim: expected key=value");
}

TEST_F(RecipeTest, OverrideFixesAnInvalidFileValue) {
  const std::string path = write_recipe({{"model.top_k", "9"}});
  EXPECT_CONTAINS(load_error(path), "model.top_k");
  EXPECT_EQ(load_recipe(path, {"model.top_k=2"}).model.top_k, 2);
  // And one that makes a cross-field rule hold by changing the other key.
  EXPECT_EQ(load_recipe(path, {"model.n_experts=16"}).model.n_experts, 16);
}

TEST_F(RecipeTest, OverrideSuppliesRequiredDataPath) {
  const std::string path = write("r.yaml", "model:\n  dim: 64\n");
  EXPECT_EQ(load_recipe(path, {"data.path=data-cache/x"}).data.path, "data-cache/x");
  EXPECT_CONTAINS(load_error(path, {"data.path="}),
                  "--set data.path=: data.path: must not be empty");
}

TEST_F(RecipeTest, ValueErrorFromOverrideNamesTheOverride) {
  const std::string path = write_recipe({});
  EXPECT_EQ(load_error(path, {"model.top_k=9"}),
            "--set model.top_k=9: model.top_k: must be <= model.n_experts (8), got 9");
  // Cross-field: the file's top_k is the offending value, the --set that made it so is named too.
  const std::string cross = write_recipe({{"model.top_k", "4"}}, "cross.yaml");
  const std::string msg = load_error(cross, {"model.n_experts=2", "parallel.ep=1"});
  EXPECT_EQ(
      msg.rfind(cross + ", --set model.n_experts=2: model.top_k: must be <= model.n_experts (2)",
                0),
      0u)
      << msg;
}

// ---- validate_recipe ----

TEST_F(RecipeTest, ValidateRecipeBuiltInCode) {
  Recipe r;
  EXPECT_THROW(
      {
        try {
          validate_recipe(r);
        } catch (const RecipeError& e) {
          EXPECT_STREQ(e.what(), "recipe: data.path: must not be empty");
          throw;
        }
      },
      RecipeError);
  r.data.path = "d";
  EXPECT_NO_THROW(validate_recipe(r));
  r.source = "sweep.yaml";
  r.parallel.pp = 5;
  EXPECT_THROW(
      {
        try {
          validate_recipe(r);
        } catch (const RecipeError& e) {
          EXPECT_STREQ(e.what(), "sweep.yaml: parallel.pp: must be <= model.n_layers (2), got 5");
          throw;
        }
      },
      RecipeError);
  r.parallel.pp = 1;
  r.optimizer.lr = std::nan("");
  EXPECT_THROW(validate_recipe(r), RecipeError);
}

// ---- validate_layout: the one layout validator, with the world it launches on ----

std::string layout_error(const Recipe& r, int world, int ranks_per_node) {
  try {
    validate_layout(r, world, ranks_per_node);
  } catch (const RecipeError& e) {
    return e.what();
  }
  return "";
}

TEST_F(RecipeTest, ValidateLayoutChecksTheWorldAndTheNodes) {
  Recipe r;
  r.source = "l.yaml";
  r.data.path = "d";
  r.parallel.pp = 2;
  r.parallel.dp = 4;
  r.parallel.ep = 4;
  r.train.global_batch = 8;
  EXPECT_EQ(layout_error(r, 8, 0), "");
  EXPECT_EQ(layout_error(r, 0, 0), "");  // no world yet: only what loading checks
  EXPECT_EQ(layout_error(r, 4, 0),
            "l.yaml: parallel.pp: parallel.pp=2 x parallel.dp=4 = 8 but the world size is 4 ranks "
            "(launch parallel.pp x parallel.dp processes)");
  // The rules loading checks come first, worded as loading words them.
  r.parallel.ep = 3;
  EXPECT_EQ(layout_error(r, 8, 0), "l.yaml: parallel.ep: 3 does not divide parallel.dp 4");
  r.parallel.ep = 4;

  // Node-limited routing: an EP group of 4 over nodes of 2 ranks spans 2 nodes: model.n_group = 2.
  EXPECT_EQ(layout_error(r, 8, 2),
            "l.yaml: model.n_group: must be 2, got 1: each EP group (parallel.ep=4) spans 2 nodes "
            "with 2 ranks per node (from the launcher) and node-limited routing places expert "
            "group g on node g of the group");
  r.parallel.ranks_per_node = 2;
  EXPECT_NE(layout_error(r, 8, 2).find("with parallel.ranks_per_node=2 and"), std::string::npos);
  r.model.n_group = 2;
  EXPECT_EQ(layout_error(r, 8, 2), "");
  // 3 + 1 over two nodes: refused whatever model.n_group.
  r.parallel.ranks_per_node = 3;
  const std::string uneven = layout_error(r, 8, 3);
  EXPECT_EQ(uneven.rfind("l.yaml: parallel.ep: the EP group of ranks 0..3 (parallel.ep=4) spans "
                         "2 nodes unevenly with parallel.ranks_per_node=3",
                         0),
            0u)
      << uneven;
  // Inside one node nothing is asked of model.n_group.
  r.model.n_group = 1;
  EXPECT_EQ(layout_error(r, 8, 8), "");
}

// ---- Dump ----

// Every key set away from its default, to values that are still valid.
Recipe odd_recipe() {
  Recipe r;
  r.run = {"runs/odd dir: \"x\"", 2, "cuda"};
  r.model.vocab_size = 300;
  r.model.dim = 96;
  r.model.n_layers = 11;  // 5 stages x 2 interleaved chunks, each with a layer
  r.model.n_heads = 6;
  r.model.attention = "mha";  // the only valid value; also the default (checked below)
  r.model.inter_dim = 333;
  r.model.moe_inter_dim = 77;
  r.model.n_experts = 16;
  r.model.n_shared_experts = 2;
  r.model.top_k = 3;
  r.model.n_group = 4;
  r.model.topk_group = 2;
  r.model.route_scale = 2.5;
  r.model.first_dense_layers = 2;
  r.model.norm_eps = 1e-5;
  r.model.rope_theta = 500000.0;
  r.model.init_std = 1.0 / 3.0;
  r.model.bias_update_gamma = 0.1 + 0.2;
  r.model.seq_aux_alpha = 1e-300;
  r.train = {7, 33, 40, 18446744073709551615ull, 3, 2};
  r.parallel = {5, 4, 2, "interleaved", 5, 2, "2,1,1,1,1,1,1,1,1,1", 0.25};
  r.parallel.node_aware_dispatch = "off";  // node-aware expert dispatch keys
  r.parallel.ranks_per_node = 3;
  r.parallel.overlap = false;
  r.data = {"/abs/data with space", 0};
  r.optimizer = {"adamw", 6e-4, 0.85, 0.999, 1e-10, 0.0, 0.5, "fp32"};  // bf16: not on cuda
  r.schedule = {13, "constant", 1.0};
  r.precision = {"fp32"};
  r.checkpoint = {9, 4, false, false};
  r.logging = {11, "4-5"};
  r.slurm = {"odd-job", "gpu",  "acct",  "high",  4,           2,  16, 8, "2-00:00:00",
             "mpirun",  600,    7,       "--exclusive;--mem=0", "A=1;B=two words", "cuda/12"};
  return r;
}

TEST_F(RecipeTest, DumpRoundTripsEveryKey) {
  Recipe r = odd_recipe();
  validate_recipe(r);
  const std::string text = recipe_to_yaml(r);
  const std::string path = write("dump.yaml", text);
  Recipe loaded = load_recipe(path);
  r.source = path;
  EXPECT_EQ(loaded, r) << text;
  EXPECT_EQ(recipe_to_yaml(loaded), recipe_to_yaml(r));

  // The odd recipe really moves every key (so a key the dump forgot would be caught): each key
  // line differs from the default dump, except the enums whose only valid value (on cuda) is the
  // default.
  Recipe defaults;
  std::istringstream a(text), b(recipe_to_yaml(defaults));
  std::string la, lb;
  int key_lines = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    if (la.rfind("  ", 0) != 0) continue;
    ++key_lines;
    if (la.find("attention:") != std::string::npos || la.find("  name:") != std::string::npos ||
        la.find("compute:") != std::string::npos || la.find("async:") != std::string::npos ||
        la.find("state_dtype:") != std::string::npos) {
      continue;
    }
    EXPECT_NE(la, lb);
  }
  EXPECT_EQ(key_lines, static_cast<int>(recipe_keys().size()));
}

TEST_F(RecipeTest, DumpOfDefaultsRoundTrips) {
  const std::string path = write_recipe({});
  const Recipe r = load_recipe(path);
  const Recipe again = parse_recipe(recipe_to_yaml(r), path);
  EXPECT_EQ(again, r);
}

TEST_F(RecipeTest, DumpQuotesStringsThatNeedIt) {
  const std::vector<std::string> awkward = {"null",      "~",         "#hash",
                                            "a: b",      "-dash",     ".hidden",
                                            "tab\there", "new\nline", "back\\slash \"q\"",
                                            "ünïcode",   "123",       "true",
                                            "[x]",       "{y}",       " lead",
                                            "trail ",    "x # y"};
  for (const std::string& s : awkward) {
    Recipe r;
    r.data.path = "d";
    r.run.dir = s;
    r.source = "mem";
    const Recipe back = parse_recipe(recipe_to_yaml(r), "mem");
    EXPECT_EQ(back.run.dir, s) << recipe_to_yaml(r);
  }
}

TEST_F(RecipeTest, DumpDoublesRoundTripExactly) {
  for (double v :
       {0.1, 1.0 / 3.0, 0.1 + 0.2, 1e-300, 123456789.123456789, 1e22, 2.5e-7, 0.000976562, 1.0}) {
    Recipe r;
    r.data.path = "d";
    r.optimizer.lr = v;
    EXPECT_EQ(parse_recipe(recipe_to_yaml(r), "mem").optimizer.lr, v) << recipe_to_yaml(r);
  }
}

TEST_F(RecipeTest, DumpHasSectionsInOrderWithEveryKey) {
  Recipe r;
  r.data.path = "d";
  const std::string text = recipe_to_yaml(r);
  const YAML::Node root = YAML::Load(text);
  std::vector<std::string> sections;
  for (const auto& kv : root) sections.push_back(kv.first.Scalar());
  EXPECT_EQ(sections, std::vector<std::string>(std::begin(kSectionOrder), std::end(kSectionOrder)));
  for (const RecipeKeyInfo& k : recipe_keys()) {
    const std::string section = k.key.substr(0, k.key.find('.'));
    const std::string name = k.key.substr(k.key.find('.') + 1);
    EXPECT_TRUE(root[section][name].IsDefined()) << k.key;
  }
}

TEST_F(RecipeTest, RecipeKeysDescribeTheSchema) {
  const std::vector<RecipeKeyInfo> keys = recipe_keys();
  std::map<std::string, RecipeKeyInfo> by_key;
  for (const auto& k : keys) {
    EXPECT_TRUE(by_key.emplace(k.key, k).second) << "duplicate " << k.key;
    EXPECT_FALSE(k.doc.empty()) << k.key;
  }
  EXPECT_EQ(by_key.at("model.dim").type, "int");
  EXPECT_EQ(by_key.at("model.dim").default_value, "128");
  EXPECT_EQ(by_key.at("train.seed").type, "uint");
  EXPECT_EQ(by_key.at("optimizer.lr").type, "float");
  EXPECT_EQ(by_key.at("optimizer.lr").default_value, "0.001");
  EXPECT_EQ(by_key.at("checkpoint.async").type, "bool");
  EXPECT_EQ(by_key.at("parallel.schedule").type, "string");
  EXPECT_EQ(by_key.at("parallel.schedule").default_value, "1f1b");
  // Every key is settable by --set, and each lands in its own member.
  const std::string path = write_recipe({});
  const Recipe base = load_recipe(path);
  const Recipe odd = odd_recipe();
  const YAML::Node odd_yaml = YAML::Load(recipe_to_yaml(odd));
  int moved = 0;
  for (const auto& k : keys) {
    const std::string section = k.key.substr(0, k.key.find('.'));
    const std::string name = k.key.substr(k.key.find('.') + 1);
    YAML::Emitter value;
    value << odd_yaml[section][name];
    Recipe one = base;
    try {
      one = load_recipe(path, {k.key + "=" + value.c_str()});
    } catch (const RecipeError&) {
      continue;  // a cross-field rule needs a partner key; DumpRoundTripsEveryKey covers those
    }
    const YAML::Node got = YAML::Load(recipe_to_yaml(one));
    const YAML::Node was = YAML::Load(recipe_to_yaml(base));
    int differing = 0;
    for (const auto& other : keys) {
      const std::string s = other.key.substr(0, other.key.find('.'));
      const std::string n = other.key.substr(other.key.find('.') + 1);
      differing += got[s][n].Scalar() != was[s][n].Scalar();
    }
    EXPECT_LE(differing, 1) << k.key;
    moved += differing;
  }
  EXPECT_GT(moved, 30);
}

TEST_F(RecipeTest, SlurmSectionKeysHaveTypesAndRanges) {
  const std::string path = write_recipe({{"slurm.partition", "debug"},
                                         {"slurm.ntasks_per_node", "4"},
                                         {"slurm.time", "\"00:10:00\""},
                                         {"slurm.env", "\"A=1;B=$(x)\""}},
                                        "slurm.yaml");
  const Recipe r = load_recipe(path);
  EXPECT_EQ(r.slurm.partition, "debug");
  EXPECT_EQ(r.slurm.ntasks_per_node, 4);
  EXPECT_EQ(r.slurm.time, "00:10:00");
  EXPECT_EQ(r.slurm.env, "A=1;B=$(x)");
  EXPECT_EQ(r.slurm.launcher, "srun");
  EXPECT_EQ(r.slurm.max_restarts, 3);
  EXPECT_CONTAINS(load_error(write_recipe({{"slurm.nodes", "0"}})),
                  "slurm.nodes: must be >= 1, got 0");
  EXPECT_CONTAINS(load_error(write_recipe({{"slurm.launcher", "mpiexec"}})),
                  "slurm.launcher: unknown value 'mpiexec' (allowed: srun, mpirun)");
  EXPECT_CONTAINS(load_error(write_recipe({{"slurm.signal_seconds", "70000"}})),
                  "slurm.signal_seconds: must be in [1, 65535], got 70000");
  EXPECT_CONTAINS(load_error(write_recipe({{"slurm.partiton", "x"}})),
                  "slurm.partiton: unknown key (did you mean slurm.partition?)");
  EXPECT_CONTAINS(load_error(path, {"slurm.max_restarts=-1"}),
                  "--set slurm.max_restarts=-1: slurm.max_restarts: must be >= 0, got -1");
}

// ---- The recipes shipped in recipes/ ----

using test_support::recipes_dir;

TEST_F(RecipeTest, ShippedRecipesLoadAndWriteEverySection) {
  for (const char* name : {"tiny-moe.yaml", "bench-moe.yaml", "bench-moe-wide.yaml",
                           "deepseek-v3-tiny.yaml", "deepseek-v3-16b.yaml",
                           "deepseek-v3-671b.yaml"}) {
    const std::string path = (recipes_dir() / name).string();
    const Recipe r = load_recipe(path);
    EXPECT_EQ(r.source, path);
    const YAML::Node root = YAML::LoadFile(path);
    for (const char* section : kSectionOrder) {
      if (std::string(section) == "slurm") continue;  // optional: only submit/sweep read it
      EXPECT_TRUE(root[section].IsMap()) << name << " " << section;
    }
  }
  const Recipe tiny = load_recipe((recipes_dir() / "tiny-moe.yaml").string());
  EXPECT_EQ(tiny.data.path, "data-cache/markov-v64-o1");
  EXPECT_EQ(tiny.run.dir, "runs/tiny-moe");
  EXPECT_EQ(tiny.model.vocab_size, 64);
  const Recipe bench = load_recipe((recipes_dir() / "bench-moe.yaml").string());
  EXPECT_EQ(bench.data.path, "data-cache/markov-v256-o1");
  EXPECT_EQ(bench.run.dir, "runs/bench-moe");
  EXPECT_EQ(bench.model.vocab_size, 256);
}

}  // namespace
}  // namespace tessera::trainer
