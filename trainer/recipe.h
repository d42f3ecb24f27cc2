// Recipe: one YAML file says everything about a run (DESIGN.md "Recipes"). Loading validates
// every key before anything is allocated: unknown keys, wrong types and impossible values are
// RecipeErrors whose message names the file and the dotted key, e.g.
//   "recipes/tiny-moe.yaml: model.top_k: must be <= model.n_experts (8), got 9".
// `overrides` are "dotted.key=value" strings (the CLI's --set); the value is parsed as a YAML
// scalar and must name a known key; errors name the key and say it came from --set.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace tessera::trainer {

class RecipeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunConfig {
  std::string dir = "runs/default";  // run.dir: metrics.jsonl, checkpoints/, logs/
  int64_t cpu_threads = 1;          // run.cpu_threads: BLAS/OpenMP threads per process, 1..1024
                                    // (training: also <= 4 x the machine's hardware threads)
  std::string device = "cpu";       // run.device: cpu | cuda (one GPU per process, by local rank)
  // run.peak_tflops: one device's peak at precision.compute; > 0 adds `mfu` to the metrics
  // (training FLOPs per token from trainer/flop_count.h x tokens/s / (world x peak)).
  double peak_tflops = 0.0;

  friend bool operator==(const RunConfig&, const RunConfig&) = default;
};

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t dim = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;                 // mha: dim % n_heads == 0, head_dim even (RoPE pairs)
  std::string attention = "mha";       // "mha" | "mla" (DeepSeek-V3 multi-head latent attention)
  // ---- MLA shapes (attention: mla; DESIGN.md "Model")
  int64_t q_lora_rank = 0;             // 0 = a single wq; else wq_a -> q_norm -> wq_b
  int64_t kv_lora_rank = 32;           // the compressed c_kv each token keeps
  int64_t qk_nope_head_dim = 16;       // per-head query/key part without RoPE
  int64_t qk_rope_head_dim = 8;        // per-head query part with RoPE, and the shared k_pe; even
  int64_t v_head_dim = 16;             // per-head value; <= qk_nope_head_dim + qk_rope_head_dim
  // ---- multi-token prediction (V3 section 2.2)
  int64_t mtp_depth = 0;               // D sequential MTP modules; rows carry seq_len + 1 + D tokens
  double mtp_lambda = 0.3;             // weight of the mean MTP loss
  double mtp_lambda_after = 0.1;       // ... from mtp_lambda_switch_tokens tokens on
  int64_t mtp_lambda_switch_tokens = 0;  // 0 = never switch
  int64_t inter_dim = 512;             // dense SwiGLU hidden size
  int64_t moe_inter_dim = 128;         // hidden size of each routed and shared expert
  int64_t n_experts = 8;               // routed experts
  int64_t n_shared_experts = 1;        // shared MLP hidden = n_shared_experts * moe_inter_dim; 0 = none
  int64_t top_k = 2;
  int64_t n_group = 1;                 // group-limited routing: n_experts % n_group == 0
  int64_t topk_group = 1;              // <= n_group; top_k <= topk_group * n_experts / n_group
  double route_scale = 1.0;
  int64_t first_dense_layers = 1;      // layers [0, first_dense_layers) use the dense FFN
  double norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double init_std = 0.02;              // normal(0, init_std) for every weight matrix
  double bias_update_gamma = 0.001;    // aux-loss-free balancing speed (0 = off)
  double seq_aux_alpha = 0.0;          // sequence-wise balance loss weight (0 = off)

  // Not a model: key: the arithmetic of the blocks' linear maps (attention projections, dense
  // FFN, experts, MTP's eh_proj), precision.compute's; embedding, head, router gate, norms and the
  // attention core stay fp32, as in V3's recipe. Set by parse_recipe.
  kernels::Precision block_precision = kernels::Precision::kF32;

  // Tokens per row of a batch: seq_len inputs, their targets, and mtp_depth more MTP targets.
  int64_t row_tokens(int64_t seq_len) const { return seq_len + 1 + mtp_depth; }

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t seq_len = 64;
  int64_t global_batch = 8;   // sequences per optimizer step, whatever the layout
  uint64_t seed = 1234;       // initialisation and data order
  int64_t eval_every = 0;     // validation every N steps (0 = only at the end)
  int64_t eval_batches = 4;   // validation batches (of global_batch sequences) per evaluation

  friend bool operator==(const TrainConfig&, const TrainConfig&) = default;
};

struct ParallelConfig {
  int64_t pp = 1;
  int64_t dp = 1;
  int64_t ep = 1;
  std::string schedule = "1f1b";  // parallel/schedule_registry.h's names
  int64_t micro_batches = 1;      // global_batch % (dp * micro_batches) == 0
  int64_t virtual_stages = 1;
  // Layers per pipeline part (stage, or model chunk with virtual stages), comma-separated, e.g.
  // "3,2"; empty = balanced. Checked with the layout (validate_layout).
  std::string stage_layers;
  // Gradients are reduce-scattered in buckets of about this size, each as soon as the backward
  // finished it (overlapping the rest of the backward).
  double grad_bucket_mb = 16.0;
  // ---- Node-aware expert dispatch (parallel/node_dispatch.h).
  // auto | on | off: across nodes each routed token travels once per destination node and fans
  // out inside it; auto = on when an EP group spans several nodes.
  std::string node_aware_dispatch = "auto";
  // Ranks per node; 0 = from the launcher (OMPI_COMM_WORLD_LOCAL_SIZE, Slurm). Set it to
  // pretend one machine is several nodes (tests) or to override a launcher that cannot tell.
  int64_t ranks_per_node = 0;
  // ---- end node-aware expert dispatch
  // FB pairs interleave the two micro-batches' pieces (false: F then B; bitwise the same results).
  bool overlap = true;

  friend bool operator==(const ParallelConfig&, const ParallelConfig&) = default;
};

struct DataConfig {
  std::string path;          // dataset directory written by `tessera prepare`
  int64_t prefetch = 4;      // batches the loader's background thread keeps ready

  friend bool operator==(const DataConfig&, const DataConfig&) = default;
};

struct OptimizerConfig {
  std::string name = "adamw";  // only adamw
  double lr = 1e-3;            // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;   // decoupled; applied to weight matrices, not norms
  double grad_clip = 1.0;      // global grad-norm clip (0 = off)
  // fp32 | bf16: how AdamW stores its two moments (bf16: rounded to nearest even after each
  // update, which computes in fp32; half the moment memory). Checkpoints hold fp32 either way.
  std::string state_dtype = "fp32";

  friend bool operator==(const OptimizerConfig&, const OptimizerConfig&) = default;
};

struct LrScheduleConfig {      // the recipe section `schedule`
  int64_t warmup_steps = 0;    // linear warm-up from 0 to optimizer.lr
  std::string decay = "cosine";  // cosine | constant
  double min_lr_ratio = 0.1;   // cosine floor as a fraction of optimizer.lr

  friend bool operator==(const LrScheduleConfig&, const LrScheduleConfig&) = default;
};

struct PrecisionConfig {
  // fp32 | bf16 | fp8 (V3's fine-grained e4m3): the GEMM inputs of the blocks' linear maps
  // (ModelConfig::block_precision). bf16 and fp8 run on the cpu backend for now.
  std::string compute = "fp32";

  friend bool operator==(const PrecisionConfig&, const PrecisionConfig&) = default;
};

struct CheckpointConfig {
  int64_t every_steps = 0;  // 0 = only at the end (if final)
  int64_t keep_last = 2;    // >= 1
  bool async = false;       // write on a background thread (checkpoint_stall_s: what the loop waited)
  bool final = true;        // also save after the last step

  friend bool operator==(const CheckpointConfig&, const CheckpointConfig&) = default;
};

struct LoggingConfig {
  int64_t every_steps = 1;  // stdout line every N steps (metrics.jsonl gets every step)
  // Chrome trace of these optimizer steps: "7" or "5-6" (inclusive); "" = off. Written to
  // run.dir/trace.json (all ranks) and run.dir/trace/rank-NNNNN.json (trainer/step_tracer.h).
  std::string trace_steps;

  friend bool operator==(const LoggingConfig&, const LoggingConfig&) = default;
};

// How `tessera submit` / `tessera sweep` run the recipe under Slurm (cluster/). Only the types and
// ranges are checked here; cluster::validate_slurm_config checks the formats (names, time, the
// ';'-separated lists) and that the job's tasks match the layout.
struct SlurmConfig {
  std::string job_name = "tessera";
  std::string partition;             // "" = the cluster's default partition
  std::string account;               // "" = none
  std::string qos;                   // "" = none
  int64_t nodes = 1;
  int64_t ntasks_per_node = 1;       // nodes * ntasks_per_node = parallel.pp * parallel.dp
  int64_t cpus_per_task = 1;
  int64_t gpus_per_node = 0;
  std::string time = "01:00:00";     // Slurm time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
  std::string launcher = "srun";     // srun | mpirun
  int64_t signal_seconds = 120;      // warning signal (USR1) this long before the time limit
  int64_t max_restarts = 3;          // requeues after a warning/preemption before giving up
  std::string extra;                 // more sbatch options, ';'-separated: "--exclusive;--mem=0"
  std::string env;                   // exported variables, ';'-separated: "A=1;B=x y"
  std::string modules;               // `module load` names, ';'-separated

  friend bool operator==(const SlurmConfig&, const SlurmConfig&) = default;
};

struct Recipe {
  std::string source;  // file it was loaded from
  RunConfig run;
  ModelConfig model;
  TrainConfig train;
  ParallelConfig parallel;
  DataConfig data;
  OptimizerConfig optimizer;
  LrScheduleConfig schedule;
  PrecisionConfig precision;
  CheckpointConfig checkpoint;
  LoggingConfig logging;
  SlurmConfig slurm;

  friend bool operator==(const Recipe&, const Recipe&) = default;
};

// Throws RecipeError. A relative data.path / run.dir is kept as written (relative to the cwd).
// Sets Recipe::source = path.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});

// load_recipe on text already in memory (e.g. the recipe stored in a checkpoint's trainer.yaml);
// `source` names the text in error messages and becomes Recipe::source.
Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});

// The value checks of load_recipe alone, for recipes built or edited in code (sweeps, planner).
// Messages start with recipe.source. Throws RecipeError.
void validate_recipe(const Recipe& recipe);

// The parallel layout's rules, the one place they are written (trainer/recipe/layout.h lists
// them): parallel.ep against parallel.dp and model.n_experts, stages and model chunks against
// model.n_layers, train.global_batch against parallel.dp x parallel.micro_batches, the schedule's
// own rules (dualpipe's even pp, micro-batches >= 2 pp, virtual stages, ...) and
// parallel.stage_layers; load_recipe and validate_recipe check these. With world_size > 0 also
// what needs the launch: parallel.pp x parallel.dp = world_size, and node-limited routing on
// ranks_per_node ranks per node (0 = all on one node): an EP group spanning N > 1 nodes needs an
// equal, contiguous share on each node and model.n_group = N. Training, the memory plan and the
// planner call it with their world. Throws RecipeError "<recipe.source>: <key>: <what>".
void validate_layout(const Recipe& recipe, int world_size = 0, int ranks_per_node = 0);

// Full recipe (every key, defaults filled in) as YAML; load_recipe(dump) gives the same Recipe.
// Doubles are printed in their shortest exact form, so they round-trip bit for bit.
std::string recipe_to_yaml(const Recipe& recipe);

// One row per recipe key, in dump order (sections run, model, ..., logging, slurm): for `--help`-style
// listings. `type` is "int", "uint", "float", "bool" or "string"; `default_value` is as dumped.
struct RecipeKeyInfo {
  std::string key;            // dotted, e.g. "model.dim"
  std::string type;
  std::string default_value;
  std::string doc;            // one line: meaning and allowed values
};
std::vector<RecipeKeyInfo> recipe_keys();

}  // namespace tessera::trainer
