// The recipe schema: the key table (fields()) and the lookups on it, "did you mean" included.
#include "trainer/recipe/schema.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "parallel/schedule_registry.h"

namespace tessera::trainer::recipe_detail {
namespace {

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

template <auto Section, auto Member>
Field field(std::string_view key, std::string_view doc, Constraint check = {}) {
  return Field{key, +[](Recipe& r) { return &((r.*Section).*Member); }, doc, std::move(check)};
}

}  // namespace

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
      field<&R::optimizer, &OptimizerConfig::state_dtype>(
          "optimizer.state_dtype",
          "AdamW moments stored as fp32 | bf16 (nearest even; the update computes in fp32, "
          "checkpoints hold fp32)",
          one_of({"fp32", "bf16"})),

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

namespace {

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

}  // namespace

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

}  // namespace tessera::trainer::recipe_detail
