// Recipe loading. The schema is written once, as the table in fields(): each row names a dotted
// key, the Recipe member it lives in, a doc line and its single-key constraint. Parsing,
// unknown-key detection, --set overrides, per-key checks and recipe_to_yaml all walk that table;
// only the checks that relate two or more keys are written out by hand (check_cross_fields).
#include "trainer/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>
#include <variant>

#include "parallel/schedule_registry.h"
#include "trainer/step_range.h"

namespace tessera::trainer {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------

template <typename T>
using Getter = T* (*)(Recipe&);
using Accessor = std::variant<Getter<int64_t>, Getter<uint64_t>, Getter<double>, Getter<bool>,
                              Getter<std::string>>;

// Constraints on one key's value alone. Bounds are doubles: every integer bound we use is small.
struct Constraint {
  std::optional<double> min;
  bool min_open = false;
  std::optional<double> max;
  bool max_open = false;
  std::vector<std::string_view> choices;  // allowed string values (empty = any)
  std::vector<std::string_view> planned;  // recognised values that are not implemented yet
  bool non_empty = false;
  // A sanity ceiling, checked after the range and reported on its own ("must be <= 1, got
  // 1.0e+30"): it stops typos such as an epsilon of 1e30, which trains without an error but
  // learns nothing, without changing how the range itself reads ("must be > 0").
  std::optional<double> ceiling;
};

Constraint range(std::optional<double> min, bool min_open, std::optional<double> max,
                 bool max_open) {
  Constraint c;
  c.min = min, c.min_open = min_open, c.max = max, c.max_open = max_open;
  return c;
}
Constraint at_least(double v) { return range(v, false, std::nullopt, false); }
Constraint above(double v) { return range(v, true, std::nullopt, false); }
Constraint above(double v, double ceiling) {
  Constraint c = above(v);
  c.ceiling = ceiling;
  return c;
}
Constraint between(double lo, double hi) { return range(lo, false, hi, false); }
Constraint from_up_to_excl(double lo, double hi) { return range(lo, false, hi, true); }
Constraint one_of(std::vector<std::string_view> choices,
                  std::vector<std::string_view> planned = {}) {
  Constraint c;
  c.choices = std::move(choices), c.planned = std::move(planned);
  return c;
}
Constraint non_empty() {
  Constraint c;
  c.non_empty = true;
  return c;
}

// parallel.schedule's choices and help, from the schedule registry (immutable statics: a Field
// keeps views).
const std::vector<std::string_view>& schedule_choices() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> v;
    for (const parallel::ScheduleInfo& row : parallel::schedule_registry()) v.push_back(row.name);
    return v;
  }();
  return names;
}
std::string_view schedule_doc() {
  static const std::string doc = parallel::schedule_names_joined(" | ");
  return doc;
}

struct Field {
  std::string_view key;  // "model.dim"
  Accessor get;
  std::string_view doc;
  Constraint check;

  std::string_view section() const { return key.substr(0, key.find('.')); }
  std::string_view name() const { return key.substr(key.find('.') + 1); }
};

template <auto Section, auto Member>
Field field(std::string_view key, std::string_view doc, Constraint check = {}) {
  return Field{key, +[](Recipe& r) { return &((r.*Section).*Member); }, doc, std::move(check)};
}

constexpr std::string_view kSections[] = {"run",        "model",     "train",    "parallel",
                                          "data",       "optimizer", "schedule", "precision",
                                          "checkpoint", "logging",   "slurm"};

const std::vector<Field>& fields() {
  using R = Recipe;
  // Sizes are bounded far above any real model (token ids are int32): absurd values fail here,
  // naming the key; whether a size fits the machine is train()'s memory check.
  static const std::vector<Field> table = {
      field<&R::run, &RunConfig::dir>(
          "run.dir", "run directory: metrics.jsonl, checkpoints/, logs/", non_empty()),
      // The upper bound stops absurd values (OpenMP crashes or never finishes a step) early;
      // training also checks the value against the machine's cores (trainer/cpu_threads_check.h).
      field<&R::run, &RunConfig::cpu_threads>("run.cpu_threads", "BLAS/OpenMP threads per process",
                                              between(1, 1024)),
      field<&R::run, &RunConfig::device>(
          "run.device", "compute device: cpu, or cuda (one GPU per process, by local rank)",
          one_of({"cpu", "cuda"})),
      field<&R::run, &RunConfig::peak_tflops>(
          "run.peak_tflops",
          "peak TFLOP/s of one device at precision.compute, for the mfu metric (0 = no mfu; "
          "`tessera train --cluster FILE` sets it from a cluster file)",
          between(0, 1e6)),

      field<&R::model, &ModelConfig::vocab_size>("model.vocab_size", "vocabulary size",
                                                 between(2, 2147483647)),
      field<&R::model, &ModelConfig::dim>("model.dim", "model width", between(2, 1 << 20)),
      field<&R::model, &ModelConfig::n_layers>("model.n_layers", "transformer layers",
                                               between(1, 10000)),
      field<&R::model, &ModelConfig::n_heads>(
          "model.n_heads", "attention heads; must divide dim, head_dim even", at_least(1)),
      field<&R::model, &ModelConfig::attention>(
          "model.attention", "mha | mla (multi-head latent attention)", one_of({"mha", "mla"})),
      field<&R::model, &ModelConfig::q_lora_rank>(
          "model.q_lora_rank", "mla: query low-rank width (0 = a single wq)", at_least(0)),
      field<&R::model, &ModelConfig::kv_lora_rank>(
          "model.kv_lora_rank", "mla: compressed key/value width c_kv", at_least(1)),
      field<&R::model, &ModelConfig::qk_nope_head_dim>(
          "model.qk_nope_head_dim", "mla: per-head query/key dims without RoPE", at_least(1)),
      field<&R::model, &ModelConfig::qk_rope_head_dim>(
          "model.qk_rope_head_dim", "mla: per-head query dims with RoPE and the shared k_pe; even",
          at_least(2)),
      field<&R::model, &ModelConfig::v_head_dim>(
          "model.v_head_dim", "mla: per-head value dims, <= qk_nope_head_dim + qk_rope_head_dim",
          at_least(1)),
      field<&R::model, &ModelConfig::mtp_depth>(
          "model.mtp_depth", "multi-token prediction modules (0 = off)", at_least(0)),
      field<&R::model, &ModelConfig::mtp_lambda>("model.mtp_lambda",
                                                 "weight of the mean MTP loss", at_least(0)),
      field<&R::model, &ModelConfig::mtp_lambda_after>(
          "model.mtp_lambda_after", "MTP weight from mtp_lambda_switch_tokens tokens on",
          at_least(0)),
      field<&R::model, &ModelConfig::mtp_lambda_switch_tokens>(
          "model.mtp_lambda_switch_tokens",
          "tokens trained after which mtp_lambda_after replaces mtp_lambda (0 = never)",
          at_least(0)),
      field<&R::model, &ModelConfig::inter_dim>("model.inter_dim", "dense SwiGLU hidden size",
                                                between(1, 1 << 22)),
      field<&R::model, &ModelConfig::moe_inter_dim>(
          "model.moe_inter_dim", "hidden size of each routed and shared expert",
          between(1, 1 << 22)),
      field<&R::model, &ModelConfig::n_experts>("model.n_experts", "routed experts, 1..256",
                                                between(1, 256)),
      field<&R::model, &ModelConfig::n_shared_experts>(
          "model.n_shared_experts",
          "shared MLP hidden = n_shared_experts * moe_inter_dim; 0 = none", at_least(0)),
      field<&R::model, &ModelConfig::top_k>("model.top_k", "experts per token, <= n_experts",
                                            at_least(1)),
      field<&R::model, &ModelConfig::n_group>(
          "model.n_group", "expert groups for group-limited routing", at_least(1)),
      field<&R::model, &ModelConfig::topk_group>("model.topk_group",
                                                 "groups kept per token, <= n_group", at_least(1)),
      field<&R::model, &ModelConfig::route_scale>("model.route_scale",
                                                  "multiplier on the normalised gates", above(0)),
      field<&R::model, &ModelConfig::first_dense_layers>(
          "model.first_dense_layers", "layers [0, N) use the dense FFN", at_least(0)),
      field<&R::model, &ModelConfig::norm_eps>("model.norm_eps", "RMSNorm epsilon, in (0, 1]",
                                                above(0, 1)),
      field<&R::model, &ModelConfig::rope_theta>("model.rope_theta", "RoPE base", above(0)),
      field<&R::model, &ModelConfig::init_std>(
          "model.init_std", "std of the normal init of weight matrices", above(0)),
      field<&R::model, &ModelConfig::bias_update_gamma>(
          "model.bias_update_gamma", "aux-loss-free balancing speed (0 = off)", at_least(0)),
      field<&R::model, &ModelConfig::seq_aux_alpha>(
          "model.seq_aux_alpha", "sequence-wise balance loss weight (0 = off)", at_least(0)),

      field<&R::train, &TrainConfig::steps>("train.steps", "optimizer steps", at_least(1)),
      field<&R::train, &TrainConfig::seq_len>("train.seq_len", "tokens per sequence",
                                              between(1, 1 << 24)),
      field<&R::train, &TrainConfig::global_batch>(
          "train.global_batch", "sequences per optimizer step, whatever the layout",
          between(1, 1 << 30)),
      field<&R::train, &TrainConfig::seed>("train.seed", "seed of initialisation and data order"),
      field<&R::train, &TrainConfig::eval_every>(
          "train.eval_every", "validation every N steps (0 = only at the end)", at_least(0)),
      field<&R::train, &TrainConfig::eval_batches>(
          "train.eval_batches", "validation batches of global_batch sequences", at_least(1)),

      field<&R::parallel, &ParallelConfig::pp>("parallel.pp", "pipeline stages, <= n_layers",
                                               at_least(1)),
      field<&R::parallel, &ParallelConfig::dp>("parallel.dp", "data-parallel replicas",
                                               at_least(1)),
      field<&R::parallel, &ParallelConfig::ep>(
          "parallel.ep", "expert-parallel degree; divides dp and n_experts", at_least(1)),
      field<&R::parallel, &ParallelConfig::schedule>(
          "parallel.schedule", schedule_doc(), one_of(schedule_choices())),
      field<&R::parallel, &ParallelConfig::overlap>(
          "parallel.overlap",
          "FB pairs interleave the two micro-batches' pieces (false: F then B; same results)"),
      field<&R::parallel, &ParallelConfig::micro_batches>(
          "parallel.micro_batches", "micro-batches per replica per step", at_least(1)),
      field<&R::parallel, &ParallelConfig::virtual_stages>(
          "parallel.virtual_stages", "model chunks per stage (> 1 only for interleaved)",
          at_least(1)),
      field<&R::parallel, &ParallelConfig::stage_layers>(
          "parallel.stage_layers",
          "layers per pipeline part, comma-separated (\"5,3\"); empty = balanced"),
      field<&R::parallel, &ParallelConfig::grad_bucket_mb>(
          "parallel.grad_bucket_mb",
          "MB of gradients per reduce-scatter bucket (sent as soon as the backward fills it)",
          above(0)),
      // ---- node-aware expert dispatch
      field<&R::parallel, &ParallelConfig::node_aware_dispatch>(
          "parallel.node_aware_dispatch",
          "auto | on | off: tokens cross to a node once, fan out inside it (auto: EP spans nodes)",
          one_of({"auto", "on", "off"})),
      field<&R::parallel, &ParallelConfig::ranks_per_node>(
          "parallel.ranks_per_node", "ranks per node; 0 = from the launcher (mpirun, Slurm)",
          at_least(0)),
      // ---- end node-aware expert dispatch

      field<&R::data, &DataConfig::path>(
          "data.path", "dataset directory written by `tessera prepare`", non_empty()),
      field<&R::data, &DataConfig::prefetch>("data.prefetch",
                                             "batches the loader thread keeps ready", at_least(0)),

      field<&R::optimizer, &OptimizerConfig::name>("optimizer.name", "adamw", one_of({"adamw"})),
      field<&R::optimizer, &OptimizerConfig::lr>("optimizer.lr", "peak learning rate", above(0)),
      field<&R::optimizer, &OptimizerConfig::beta1>("optimizer.beta1", "in [0, 1)",
                                                    from_up_to_excl(0, 1)),
      field<&R::optimizer, &OptimizerConfig::beta2>("optimizer.beta2", "in [0, 1)",
                                                    from_up_to_excl(0, 1)),
      field<&R::optimizer, &OptimizerConfig::eps>("optimizer.eps", "AdamW epsilon, in (0, 1]",
                                                   above(0, 1)),
      field<&R::optimizer, &OptimizerConfig::weight_decay>(
          "optimizer.weight_decay", "decoupled, on weight matrices only", at_least(0)),
      field<&R::optimizer, &OptimizerConfig::grad_clip>(
          "optimizer.grad_clip", "global grad-norm clip (0 = off)", at_least(0)),

      field<&R::schedule, &LrScheduleConfig::warmup_steps>(
          "schedule.warmup_steps", "linear warm-up steps from 0 to optimizer.lr", at_least(0)),
      field<&R::schedule, &LrScheduleConfig::decay>("schedule.decay", "cosine | constant",
                                                    one_of({"cosine", "constant"})),
      field<&R::schedule, &LrScheduleConfig::min_lr_ratio>(
          "schedule.min_lr_ratio", "cosine floor as a fraction of optimizer.lr, in [0, 1]",
          between(0, 1)),

      field<&R::precision, &PrecisionConfig::compute>(
          "precision.compute",
          "GEMM inputs of the blocks' linear maps: fp32 | bf16 | fp8 (V3's fine-grained e4m3)",
          one_of({"fp32", "bf16", "fp8"})),

      field<&R::checkpoint, &CheckpointConfig::every_steps>(
          "checkpoint.every_steps", "save every N steps (0 = only at the end, if final)",
          at_least(0)),
      field<&R::checkpoint, &CheckpointConfig::keep_last>("checkpoint.keep_last",
                                                          "complete checkpoints kept", at_least(1)),
      field<&R::checkpoint, &CheckpointConfig::async>(
          "checkpoint.async", "write checkpoints on a background thread while training goes on"),
      field<&R::checkpoint, &CheckpointConfig::final>(
          "checkpoint.final", "also save after the last step (false: only every_steps saves)"),

      field<&R::logging, &LoggingConfig::every_steps>("logging.every_steps",
                                                      "stdout line every N steps", at_least(1)),
      field<&R::logging, &LoggingConfig::trace_steps>(
          "logging.trace_steps",
          "Chrome trace of these steps: \"7\" or \"5-6\" (inclusive); empty = off"),

      // Formats are checked by cluster::validate_slurm_config when a job is rendered.
      field<&R::slurm, &SlurmConfig::job_name>("slurm.job_name", "Slurm job name", non_empty()),
      field<&R::slurm, &SlurmConfig::partition>("slurm.partition",
                                                "partition (empty = the cluster's default)"),
      field<&R::slurm, &SlurmConfig::account>("slurm.account", "account to charge (empty = none)"),
      field<&R::slurm, &SlurmConfig::qos>("slurm.qos", "quality of service (empty = none)"),
      field<&R::slurm, &SlurmConfig::nodes>("slurm.nodes", "nodes", at_least(1)),
      field<&R::slurm, &SlurmConfig::ntasks_per_node>(
          "slurm.ntasks_per_node", "processes per node; nodes * this = parallel.pp * parallel.dp",
          at_least(1)),
      field<&R::slurm, &SlurmConfig::cpus_per_task>("slurm.cpus_per_task", "CPUs per process",
                                                    at_least(1)),
      field<&R::slurm, &SlurmConfig::gpus_per_node>("slurm.gpus_per_node",
                                                    "GPUs per node (0 = none requested)",
                                                    at_least(0)),
      field<&R::slurm, &SlurmConfig::time>(
          "slurm.time", "time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S", non_empty()),
      field<&R::slurm, &SlurmConfig::launcher>("slurm.launcher", "srun | mpirun",
                                               one_of({"srun", "mpirun"})),
      field<&R::slurm, &SlurmConfig::signal_seconds>(
          "slurm.signal_seconds", "USR1 this many seconds before the time limit, 1..65535",
          between(1, 65535)),
      field<&R::slurm, &SlurmConfig::max_restarts>(
          "slurm.max_restarts", "requeues after a warning or preemption before giving up",
          at_least(0)),
      field<&R::slurm, &SlurmConfig::extra>(
          "slurm.extra", "more sbatch options, ';'-separated (\"--exclusive;--mem=0\")"),
      field<&R::slurm, &SlurmConfig::env>(
          "slurm.env", "environment of the job, ';'-separated NAME=VALUE pairs"),
      field<&R::slurm, &SlurmConfig::modules>("slurm.modules",
                                              "environment modules to load, ';'-separated"),
  };
  return table;
}

// Getters take Recipe& so one table serves writing and reading; reading only takes an address.
template <typename T>
const T& read(Getter<T> get, const Recipe& r) {
  return *get(const_cast<Recipe&>(r));
}

const Field* find_field(std::string_view key) {
  for (const Field& f : fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

bool is_section(std::string_view name) {
  return std::find(std::begin(kSections), std::end(kSections), name) != std::end(kSections);
}

const char* type_name(const Accessor& get) {
  static constexpr const char* kNames[] = {"int", "uint", "float", "bool", "string"};
  return kNames[get.index()];
}

// ---------------------------------------------------------------------------------------------
// "Did you mean": optimal-string-alignment distance (edits, with adjacent transpositions).
// ---------------------------------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

constexpr size_t kMaxSuggestDistance = 2;

// The closest candidate within kMaxSuggestDistance, or "".
std::string closest(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_d = kMaxSuggestDistance + 1;
  for (std::string_view c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return std::string(best);
}

// For an unknown dotted key (or bare name): a near-miss key, else the one key in another section
// with exactly this leaf name (train.lr -> optimizer.lr). Returns " (did you mean X?)" or "".
std::string did_you_mean(std::string_view key) {
  std::vector<std::string_view> keys;
  for (const Field& f : fields()) keys.push_back(f.key);
  std::string best = closest(key, keys);
  if (best.empty()) {
    const std::string_view leaf = key.substr(key.find('.') + 1);
    std::vector<std::string_view> same_leaf;
    for (const Field& f : fields()) {
      if (f.name() == leaf) same_leaf.push_back(f.key);
    }
    if (same_leaf.size() == 1) best = same_leaf[0];
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

std::string did_you_mean_section(std::string_view name) {
  std::string best = closest(name, {std::begin(kSections), std::end(kSections)});
  return best.empty() ? did_you_mean(name) : " (did you mean " + best + "?)";
}

// ---------------------------------------------------------------------------------------------
// Scalars. Types follow the YAML 1.2 core schema, strictly: an integer is a plain decimal integer
// scalar, a float is a plain decimal number (1, 0.5, 1e-3), a bool is true/false.
// ---------------------------------------------------------------------------------------------

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// from_chars rejects a leading '+'; YAML allows it.
std::string_view drop_plus(std::string_view s) {
  return !s.empty() && s[0] == '+' ? s.substr(1) : s;
}

bool looks_like_int(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  return all_digits(s);
}

bool looks_like_float(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  const size_t e = s.find_first_of("eE");
  std::string_view mant = s.substr(0, e);
  if (e != std::string_view::npos) {
    std::string_view exp = s.substr(e + 1);
    if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) exp.remove_prefix(1);
    if (!all_digits(exp)) return false;
  }
  const size_t dot = mant.find('.');
  if (dot == std::string_view::npos) return all_digits(mant);
  const std::string_view whole = mant.substr(0, dot), frac = mant.substr(dot + 1);
  if (whole.empty() && frac.empty()) return false;
  return (whole.empty() || all_digits(whole)) && (frac.empty() || all_digits(frac));
}

// What a node is, for "expected X, got Y" messages.
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      if (n.Tag() == "?") return "'" + n.Scalar() + "'";
      if (n.Tag() == "!") return "the quoted string \"" + n.Scalar() + "\"";
      return "'" + n.Scalar() + "' tagged " + n.Tag();
    default:
      return "nothing";
  }
}

// A plain (untagged, unquoted) scalar, or one explicitly tagged with the matching core type.
bool plain_or_tagged(const YAML::Node& n, std::string_view core_type) {
  return n.IsScalar() &&
         (n.Tag() == "?" || n.Tag() == std::string("tag:yaml.org,2002:") + std::string(core_type));
}

std::optional<std::string> set_int(int64_t* out, const YAML::Node& n) {
  const std::string expected = "expected an integer, got " + describe(n);
  if (!plain_or_tagged(n, "int") || !looks_like_int(n.Scalar())) return expected;
  const std::string_view s = drop_plus(n.Scalar());
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_uint(uint64_t* out, const YAML::Node& n) {
  const std::string expected = "expected a non-negative integer, got " + describe(n);
  if (!plain_or_tagged(n, "int") || !looks_like_int(n.Scalar())) return expected;
  const std::string_view s = drop_plus(n.Scalar());
  if (!s.empty() && s[0] == '-') return expected;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_double(double* out, const YAML::Node& n) {
  const std::string expected = "expected a number, got " + describe(n);
  if (!(plain_or_tagged(n, "float") || plain_or_tagged(n, "int")) ||
      !looks_like_float(n.Scalar())) {
    return expected;
  }
  const std::string_view s = drop_plus(n.Scalar());
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_bool(bool* out, const YAML::Node& n) {
  if (plain_or_tagged(n, "bool")) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return *out = true, std::nullopt;
    if (s == "false" || s == "False" || s == "FALSE") return *out = false, std::nullopt;
  }
  return "expected true or false, got " + describe(n);
}

// Any scalar is a string (quoted or not); an empty value is the empty string.
std::optional<std::string> set_string(std::string* out, const YAML::Node& n) {
  if (n.IsNull()) return *out = "", std::nullopt;
  if (n.IsScalar()) return *out = n.Scalar(), std::nullopt;
  return "expected a string, got " + describe(n);
}

// Stores `node` into the field; on a type mismatch returns the message and leaves it unchanged.
std::optional<std::string> assign(const Field& f, Recipe& r, const YAML::Node& node) {
  return std::visit(
      [&](auto get) -> std::optional<std::string> {
        auto* p = get(r);
        using T = std::remove_pointer_t<decltype(p)>;
        T v{};
        std::optional<std::string> err;
        if constexpr (std::is_same_v<T, int64_t>) err = set_int(&v, node);
        if constexpr (std::is_same_v<T, uint64_t>) err = set_uint(&v, node);
        if constexpr (std::is_same_v<T, double>) err = set_double(&v, node);
        if constexpr (std::is_same_v<T, bool>) err = set_bool(&v, node);
        if constexpr (std::is_same_v<T, std::string>) err = set_string(&v, node);
        if (!err) *p = std::move(v);
        return err;
      },
      f.get);
}

// Shortest text that parses back to exactly `v`, always with a '.' so YAML 1.1 readers (PyYAML)
// also see a float: 0.001, 1.0, 1.0e-06.
std::string format_double(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, end);
  if (ec != std::errc() || !std::isfinite(v) || s.find('.') != std::string::npos) return s;
  const size_t e = s.find('e');
  return e == std::string::npos ? s + ".0" : s.insert(e, ".0");
}

// The field's value as text, unquoted (messages; the dump quotes strings where needed).
std::string value_text(const Field& f, const Recipe& recipe) {
  return std::visit(
      [&](auto get) -> std::string {
        const auto& v = read(get, recipe);
        using T = std::remove_cvref_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return format_double(v);
        } else {
          return std::to_string(v);
        }
      },
      f.get);
}

// A string as a YAML scalar that loads back as the same string: plain when that is unambiguous,
// double-quoted with escapes otherwise.
std::string yaml_string(const std::string& s) {
  const bool plain_safe = !s.empty() && s != "~" && s != "null" && s != "Null" && s != "NULL" &&
                          std::all_of(s.begin(), s.end(),
                                      [](char c) {
                                        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                               (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                                               c == '/' || c == '-' || c == '+';
                                      }) &&
                          s[0] != '-' && s[0] != '.';
  if (plain_safe) return s;
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// ---------------------------------------------------------------------------------------------
// Origins: where each key's value came from, so errors name the file (and line) or the --set.
// ---------------------------------------------------------------------------------------------

struct Origin {
  std::string source;  // file path, or "--set key=value"
  int line = -1;       // 1-based, when the value came from the file
  int column = -1;
  bool from_override = false;
};

class Origins {
 public:
  explicit Origins(std::string file) : file_{std::move(file)} {}

  void set(std::string_view key, Origin origin) { by_key_[std::string(key)] = std::move(origin); }
  bool has(std::string_view key) const { return by_key_.count(std::string(key)) > 0; }
  // Keys left at their default belong to the file (it chose not to set them).
  Origin of(std::string_view key) const {
    const auto it = by_key_.find(std::string(key));
    return it == by_key_.end() ? Origin{file_} : it->second;
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::map<std::string, Origin> by_key_;
};

std::string position(const Origin& o) {
  if (o.line < 0) return "";
  return " (line " + std::to_string(o.line) + ", column " + std::to_string(o.column) + ")";
}

Origin file_origin(const std::string& file, const YAML::Mark& mark) {
  return Origin{file, mark.line + 1, mark.column + 1};
}

[[noreturn]] void fail_at(const Origin& o, std::string_view key, const std::string& what) {
  throw RecipeError(o.source + ": " + std::string(key) + ": " + what + position(o));
}

// ---------------------------------------------------------------------------------------------
// Reading the file and the overrides
// ---------------------------------------------------------------------------------------------

void read_sections(const YAML::Node& root, const std::string& file, Recipe& recipe,
                   Origins& origins) {
  if (!root.IsMap()) {
    throw RecipeError(file + ": the top level must be a map of sections (run, model, ...), got " +
                      describe(root));
  }
  std::set<std::string> seen_sections;
  for (const auto& section_kv : root) {
    const YAML::Node& section_key = section_kv.first;
    const Origin at = file_origin(file, section_key.Mark());
    if (!section_key.IsScalar())
      fail_at(at, describe(section_key), "a section name must be a scalar");
    const std::string section = section_key.Scalar();
    if (!is_section(section))
      fail_at(at, section, "unknown section" + did_you_mean_section(section));
    if (!seen_sections.insert(section).second) fail_at(at, section, "duplicate section");

    const YAML::Node& body = section_kv.second;
    if (body.IsNull()) continue;  // "model:" with nothing under it keeps the defaults
    if (!body.IsMap()) {
      fail_at(file_origin(file, body.Mark()), section,
              "expected a map of keys, got " + describe(body));
    }
    std::set<std::string> seen_keys;
    for (const auto& kv : body) {
      const Origin key_at = file_origin(file, kv.first.Mark());
      if (!kv.first.IsScalar())
        fail_at(key_at, section, "a key must be a scalar, got " + describe(kv.first));
      const std::string key = section + "." + kv.first.Scalar();
      const Field* f = find_field(key);
      if (f == nullptr) fail_at(key_at, key, "unknown key" + did_you_mean(key));
      if (!seen_keys.insert(key).second) fail_at(key_at, key, "duplicate key");
      const Origin value_at = kv.second.IsNull() ? key_at : file_origin(file, kv.second.Mark());
      if (auto err = assign(*f, recipe, kv.second)) fail_at(value_at, key, *err);
      origins.set(key, value_at);
    }
  }
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

void apply_override(const std::string& text, Recipe& recipe, Origins& origins) {
  const std::string src = "--set " + text;
  const size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw RecipeError(src + ": expected key=value (e.g. --set model.dim=128)");
  }
  const std::string key = trim(std::string_view(text).substr(0, eq));
  if (key.empty()) throw RecipeError(src + ": expected key=value, got no key before '='");
  const std::string value = text.substr(eq + 1);
  const Field* f = find_field(key);
  if (f == nullptr) throw RecipeError(src + ": unknown key " + key + did_you_mean(key));
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw RecipeError(src + ": " + key + ": cannot parse '" + value +
                      "' as a YAML scalar: " + e.msg);
  }
  if (auto err = assign(*f, recipe, node)) throw RecipeError(src + ": " + key + ": " + *err);
  origins.set(key, Origin{src, -1, -1, true});
}

// ---------------------------------------------------------------------------------------------
// Value checks
// ---------------------------------------------------------------------------------------------

class Checker {
 public:
  Checker(const Recipe& recipe, const Origins& origins) : r_{recipe}, origins_{origins} {}

  void run() {
    for (const Field& f : fields()) check_field(f);
    check_cross_fields();
  }

 private:
  // Message: "<origin of keys[0]>[, <other --set origins>]: keys[0]: what".
  [[noreturn]] void fail(std::initializer_list<std::string_view> keys,
                         const std::string& what) const {
    const std::string_view primary = *keys.begin();
    const Origin first = origins_.of(primary);
    std::string prefix = first.source;
    std::set<std::string> named{first.source};
    for (std::string_view k : keys) {
      const Origin o = origins_.of(k);
      if (o.from_override && named.insert(o.source).second) prefix += ", " + o.source;
    }
    throw RecipeError(prefix + ": " + std::string(primary) + ": " + what + position(first));
  }

  void check_field(const Field& f) const {
    const Constraint& c = f.check;
    const std::string text = value_text(f, r_);
    if (const auto* get = std::get_if<Getter<std::string>>(&f.get)) {
      const std::string& s = read(*get, r_);
      if (c.non_empty && s.empty()) fail({f.key}, "must not be empty");
      if (c.choices.empty()) return;
      if (std::find(c.planned.begin(), c.planned.end(), s) != c.planned.end()) {
        fail({f.key}, s + " is not implemented yet");
      }
      if (std::find(c.choices.begin(), c.choices.end(), s) == c.choices.end()) {
        std::string allowed;
        for (std::string_view a : c.choices)
          allowed += (allowed.empty() ? "" : ", ") + std::string(a);
        std::string hint = closest(s, c.choices);
        fail({f.key}, "unknown value '" + s + "' (allowed: " + allowed + ")" +
                          (hint.empty() ? "" : "; did you mean " + hint + "?"));
      }
      return;
    }
    double v;
    if (const auto* gi = std::get_if<Getter<int64_t>>(&f.get)) {
      v = static_cast<double>(read(*gi, r_));
    } else if (const auto* gd = std::get_if<Getter<double>>(&f.get)) {
      v = read(*gd, r_);
      if (!std::isfinite(v)) fail({f.key}, "must be a finite number, got " + text);
    } else {
      return;  // bools and the uint64 seed have no range
    }
    // Written as "ok = ..." so that NaN fails.
    const bool min_ok = !c.min || (c.min_open ? v > *c.min : v >= *c.min);
    const bool max_ok = !c.max || (c.max_open ? v < *c.max : v <= *c.max);
    auto bound = [](double b) {  // shortest form: "2", "0", "1", not "2.0"
      char buf[64];
      return std::string(buf, std::to_chars(buf, buf + sizeof buf, b).ptr);
    };
    if (min_ok && max_ok) {
      if (c.ceiling && v > *c.ceiling)
        fail({f.key}, "must be <= " + bound(*c.ceiling) + ", got " + text);
      return;
    }
    if (c.min && c.max) {
      fail({f.key}, "must be in " + std::string(c.min_open ? "(" : "[") + bound(*c.min) + ", " +
                        bound(*c.max) + (c.max_open ? ")" : "]") + ", got " + text);
    }
    if (c.min)
      fail({f.key}, std::string(c.min_open ? "must be > " : "must be >= ") + bound(*c.min) +
                        ", got " + text);
    fail({f.key},
         std::string(c.max_open ? "must be < " : "must be <= ") + bound(*c.max) + ", got " + text);
  }

  void check_cross_fields() const {
    const ModelConfig& m = r_.model;
    const ParallelConfig& p = r_.parallel;
    auto s = [](auto v) { return std::to_string(v); };

    if (m.attention == "mla") {
      if (m.qk_rope_head_dim % 2 != 0) {
        fail({"model.qk_rope_head_dim"},
             "must be even (RoPE rotates pairs), got " + s(m.qk_rope_head_dim));
      }
      if (m.v_head_dim > m.qk_nope_head_dim + m.qk_rope_head_dim) {
        fail({"model.v_head_dim", "model.qk_nope_head_dim", "model.qk_rope_head_dim"},
             "must be <= model.qk_nope_head_dim + model.qk_rope_head_dim (" +
                 s(m.qk_nope_head_dim + m.qk_rope_head_dim) + ", the attention kernel pads v "
                 "to the query/key head width), got " + s(m.v_head_dim));
      }
    } else if (m.dim % m.n_heads != 0) {
      fail({"model.n_heads", "model.dim"}, s(m.n_heads) + " does not divide model.dim " + s(m.dim));
    } else if ((m.dim / m.n_heads) % 2 != 0) {
      fail({"model.n_heads", "model.dim"}, "head_dim = model.dim / model.n_heads = " + s(m.dim) +
                                               " / " + s(m.n_heads) + " = " + s(m.dim / m.n_heads) +
                                               " must be even (RoPE rotates pairs)");
    }
    if (m.top_k > m.n_experts) {
      fail({"model.top_k", "model.n_experts"},
           "must be <= model.n_experts (" + s(m.n_experts) + "), got " + s(m.top_k));
    }
    if (m.n_experts % m.n_group != 0) {
      fail({"model.n_group", "model.n_experts"},
           s(m.n_group) + " does not divide model.n_experts " + s(m.n_experts));
    }
    if (m.n_group > 1 && m.n_experts / m.n_group < 2) {
      fail({"model.n_group", "model.n_experts"},
           "each group needs >= 2 experts (a group's score sums its top-2), but model.n_experts " +
               s(m.n_experts) + " / model.n_group " + s(m.n_group) + " = " +
               s(m.n_experts / m.n_group));
    }
    if (m.topk_group > m.n_group) {
      fail({"model.topk_group", "model.n_group"},
           "must be <= model.n_group (" + s(m.n_group) + "), got " + s(m.topk_group));
    }
    const int64_t reachable = m.topk_group * (m.n_experts / m.n_group);
    if (m.top_k > reachable) {
      fail({"model.top_k", "model.topk_group", "model.n_experts", "model.n_group"},
           "must be <= model.topk_group * model.n_experts / model.n_group (" + s(m.topk_group) +
               " * " + s(m.n_experts) + " / " + s(m.n_group) + " = " + s(reachable) + "), got " +
               s(m.top_k));
    }
    if (m.first_dense_layers > m.n_layers) {
      fail({"model.first_dense_layers", "model.n_layers"},
           "must be <= model.n_layers (" + s(m.n_layers) + "), got " + s(m.first_dense_layers));
    }

    if (r_.precision.compute != "fp32" && r_.run.device == "cuda") {
      fail({"precision.compute", "run.device"},
           r_.precision.compute + " is not implemented on cuda yet (its bf16/fp8 GEMMs are not "
           "written); use fp32 there, or run.device cpu");
    }
    if (p.dp % p.ep != 0) {
      fail({"parallel.ep", "parallel.dp"}, s(p.ep) + " does not divide parallel.dp " + s(p.dp));
    }
    if (m.n_experts % p.ep != 0) {
      fail({"parallel.ep", "model.n_experts"},
           s(p.ep) + " does not divide model.n_experts " + s(m.n_experts));
    }
    if (p.pp > m.n_layers) {
      fail({"parallel.pp", "model.n_layers"},
           "must be <= model.n_layers (" + s(m.n_layers) + "), got " + s(p.pp));
    }
    if (r_.train.global_batch % (p.dp * p.micro_batches) != 0) {
      fail({"train.global_batch", "parallel.dp", "parallel.micro_batches"},
           s(r_.train.global_batch) +
               " is not divisible by parallel.dp * parallel.micro_batches (" + s(p.dp) + " * " +
               s(p.micro_batches) + " = " + s(p.dp * p.micro_batches) + ")");
    }
    try {  // the schedule registry's constraints (dualpipe: even pp, micro-batches >= 2 pp, ...)
      parallel::schedule_info(p.schedule).validate(static_cast<int>(p.pp),
                                                   static_cast<int>(p.micro_batches),
                                                   static_cast<int>(p.virtual_stages));
    } catch (const parallel::ScheduleError& e) {
      fail({"parallel.schedule", "parallel.pp", "parallel.micro_batches", "parallel.virtual_stages"},
           std::string("does not fit: ") + e.what());
    }

    std::optional<StepRange> traced;
    try {
      traced = parse_step_range(r_.logging.trace_steps);
    } catch (const std::invalid_argument& e) {
      fail({"logging.trace_steps"}, "'" + r_.logging.trace_steps + "': " + e.what());
    }
    if (traced && traced->last > r_.train.steps) {
      fail({"logging.trace_steps", "train.steps"},
           "'" + r_.logging.trace_steps + "' goes past the last step, train.steps = " +
               s(r_.train.steps));
    }
  }

  const Recipe& r_;
  const Origins& origins_;
};

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::Exception& e) {
    throw RecipeError(source + ": YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                      ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (docs.size() > 1) {
    throw RecipeError(source + ": expected one YAML document, found " +
                      std::to_string(docs.size()));
  }
  Recipe recipe;
  recipe.source = source;
  Origins origins(source);
  if (!docs.empty() && !docs[0].IsNull()) read_sections(docs[0], source, recipe, origins);
  for (const std::string& o : overrides) apply_override(o, recipe, origins);
  if (!origins.has("data.path")) {
    throw RecipeError(source +
                      ": data.path: required key is missing (the dataset directory "
                      "written by `tessera prepare`)");
  }
  Checker(recipe, origins).run();
  recipe.model.block_precision = kernels::parse_precision(recipe.precision.compute);
  return recipe;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw RecipeError(path + ": cannot read recipe: is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RecipeError(path + ": cannot open recipe file (missing or unreadable)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw RecipeError(path + ": error while reading recipe file");
  return parse_recipe(text.str(), path, overrides);
}

void validate_recipe(const Recipe& recipe) {
  Checker(recipe, Origins(recipe.source.empty() ? "recipe" : recipe.source)).run();
}

std::string recipe_to_yaml(const Recipe& recipe) {
  std::string out = "# tessera recipe: every key, defaults filled in";
  if (!recipe.source.empty() && recipe.source.find_first_of("\r\n") == std::string::npos) {
    out += " (loaded from " + recipe.source + ")";
  }
  out += "\n";
  for (std::string_view section : kSections) {
    std::vector<std::pair<std::string, const Field*>> lines;
    size_t width = 0;
    for (const Field& f : fields()) {
      if (f.section() != section) continue;
      std::string value = value_text(f, recipe);
      if (std::holds_alternative<Getter<std::string>>(f.get)) value = yaml_string(value);
      lines.emplace_back("  " + std::string(f.name()) + ": " + value, &f);
      width = std::max(width, lines.back().first.size());
    }
    out += std::string(section) + ":\n";
    for (const auto& [line, f] : lines) {
      out += line + std::string(width - line.size() + 2, ' ') + "# " + std::string(f->doc) + "\n";
    }
  }
  return out;
}

std::vector<RecipeKeyInfo> recipe_keys() {
  const Recipe defaults;
  std::vector<RecipeKeyInfo> keys;
  for (const Field& f : fields()) {
    std::string value = value_text(f, defaults);
    if (std::holds_alternative<Getter<std::string>>(f.get)) value = yaml_string(value);
    keys.push_back({std::string(f.key), type_name(f.get), value, std::string(f.doc)});
  }
  return keys;
}

}  // namespace tessera::trainer
