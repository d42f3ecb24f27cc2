// Calibration: measurements of this machine in the units of a cluster description
// (cluster/cluster_spec.h), for `tessera plan calibrate` (cluster/plan_calibrate_command.cc).
//
// Two halves:
//   - What to measure, from recipes (pure, no MPI, no timing): plan_calibration() lists the GEMM
//     shapes (trainer::gemm_shapes of each recipe's micro-batch, per precision, plus large square
//     shapes for the peaks) and the attention cores; the machine facts (CPU model, memory, cache).
//   - The measure_* functions. Each is a COLLECTIVE over `world`: every rank calls it with the
//     same arguments at the same time and every rank measures at once (as in training, the ranks
//     share the machine's cores, memory and links). Each returns the figure of the slowest rank
//     that took part (its seconds per call; synchronous training waits for it at every
//     exchange), the same value on every rank.
//
// Timing (every measure_*): one untimed warm-up call (first touch of the buffers, library set-up),
// one probe call; the ranks agree on the calls per sample from the slowest probe, so they run the
// same work side by side, and each rank takes the median over TimingPolicy::samples samples of at
// least TimingPolicy::sample_s seconds. A barrier over `world` starts every sample.
//
// Thread-safety: one thread per rank calls these; kernels::set_cpu_threads sets the threads the
// GEMM, attention and memory loops use.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tessera::cluster {

struct TimingPolicy {
  double sample_s = 0.05;  // Default: samples of at least 50 ms
  int samples = 5;         // Default: the median of 5
  // --quick: short samples, for tests (noisier numbers).
  static TimingPolicy quick() { return {0.003, 3}; }
};

// ---- What to measure.

struct GemmRequest {
  std::string precision;  // fp32 | bf16 | fp8 (kernels::parse_precision's names)
  std::string layout;     // nt (linear_forward) | nn (linear_backward_input) | tn (_weight)
  int64_t m = 0, n = 0, k = 0;
  double flops() const { return 2.0 * static_cast<double>(m) * n * k; }
  friend bool operator==(const GemmRequest&, const GemmRequest&) = default;
};

// One causal attention core as the backend runs it: q, k and v all of width head_dim (MLA's v is
// zero-padded to qk_nope + qk_rope), FLOPs counted as trainer/flop_count.h counts them (with the
// unpadded v_dim): forward 2 heads (qk_dim + v_dim) (seq_len + 1) / 2 per token, backward 2x.
struct AttentionRequest {
  int64_t batch = 0, seq_len = 0, heads = 0;
  int64_t qk_dim = 0;  // the backend's head_dim
  int64_t v_dim = 0;
  double forward_flops() const;
  double backward_flops() const { return 2.0 * forward_flops(); }
  friend bool operator==(const AttentionRequest&, const AttentionRequest&) = default;
};

struct CalibrationPlan {
  std::vector<std::string> precisions;  // recipe shapes are measured at these (fp32 first)
  std::vector<GemmRequest> gemms;       // distinct; recipe shapes, then the squares
  std::vector<AttentionRequest> attention;  // distinct (seq_len, qk_dim)
};

// Rows (sequences) and tokens of one micro-batch of one data replica:
// global_batch / (dp * micro_batches), times seq_len.
int64_t micro_batch_rows(const trainer::Recipe& recipe);
int64_t micro_batch_tokens(const trainer::Recipe& recipe);

// fp32, then every other precision some recipe's precision.compute names or `extra` lists, in the
// order fp32, bf16, fp8. Throws std::invalid_argument naming a value of `extra` that is not one.
std::vector<std::string> calibration_precisions(const std::vector<trainer::Recipe>& recipes,
                                                const std::vector<std::string>& extra);

// The micro-batch rows of the recipe's layouts on up to `ranks` ranks, largest first: its own
// micro_batch_rows, and global_batch / k for every power of two k = dp x micro_batches up to
// 4 x ranks that divides global_batch (data replicas and pipeline micro-batches split the batch).
// ranks <= 0: its own only.
std::vector<int64_t> layout_micro_batch_rows(const trainer::Recipe& recipe, int ranks);

// The GEMMs: every distinct shape of trainer::gemm_shapes(recipe.model, tokens) of every recipe
// (routed experts at the rows one expert gets from one rank), for the tokens of every
// layout_micro_batch_rows(recipe, layout_ranks) (its own micro-batch only at 0),
// at fp32, and the shapes that run at the block precision also at each other precision of
// `precisions`; then n x n x n (layout nt) for each of `square_sizes` at fp32, bf16 and fp8 (the
// peaks). The attention cores of every recipe's layers at (micro_batch_rows, seq_len), with batch
// and then heads reduced until the buffers measuring them (q, k, v, out and their gradients, the
// saved logsumexp and scratch: batch x heads x (8 qk_dim + 2) x seq_len floats) fit in
// `attention_bytes`.
CalibrationPlan plan_calibration(const std::vector<trainer::Recipe>& recipes,
                                 const std::vector<std::string>& precisions,
                                 const std::vector<int64_t>& square_sizes, int layout_ranks = 0,
                                 int64_t attention_bytes = int64_t{1} << 30);

// Power-of-two group sizes 2, 4, ... up to world_size (none below 2).
std::vector<int> all_to_all_group_sizes(int world_size);

// Elements of one STREAM array per rank: the three arrays of all ranks together hold at least 4x
// the last-level cache (STREAM's rule), at least min_bytes per array, at most max_bytes.
int64_t stream_array_bytes(int64_t last_level_cache_bytes, int ranks, int64_t min_bytes,
                           int64_t max_bytes);

// ---- The machine (Linux; fallbacks where a file is missing).
std::string cpu_model_name();        // /proc/cpuinfo "model name"; "unknown CPU"
int online_cpus();                   // sysconf(_SC_NPROCESSORS_ONLN)
double total_memory_gib();           // /proc/meminfo MemTotal; 0 when unknown
int64_t last_level_cache_bytes();    // the largest cache in sysfs of cpu0; 0 when unknown

// ---- Measurements: collectives over `world`, the slowest rank's (see the top of this file).

// The largest of the ranks' `seconds` among those with `takes_part` (0 when none does), on every
// rank: the figure a measurement reports. Synchronous training waits for its slowest rank at
// every exchange, so a step runs at that rank's pace, not the mean's (side by side, ranks differ
// by a few percent on one GEMM). A collective over `world`.
double slowest_over_ranks(parallel::Comm& world, double seconds, bool takes_part);

// TFLOP/s (2 m n k / s / 1e12) of the request's GEMM through backend.ops<float>()'s linear ops
// with LinearOptions::precision: nt = linear_forward (N = m, O = n, I = k), nn =
// linear_backward_input (N = m, I = n, O = k), tn = linear_backward_weight (O = m, I = n, N = k).
// The calls cycle through copies of the operands, 64 MiB of them together, so they come from
// memory as in a training step rather than from a cache the previous call warmed.
double measure_gemm_tflops(kernels::Backend& backend, parallel::Comm& world,
                           const GemmRequest& gemm, const TimingPolicy& timing);

struct AttentionTflops {
  double forward = 0.0, backward = 0.0;
};
// The backend's attention_forward and attention_backward at the request's shape, the calls cycling
// through cold copies of their operands as measure_gemm_tflops's do.
AttentionTflops measure_attention_tflops(kernels::Backend& backend, parallel::Comm& world,
                                         const AttentionRequest& attention,
                                         const TimingPolicy& timing);

// GB/s of a STREAM triad a = b + s c over three arrays of `array_bytes` doubles per rank
// (STREAM's counting: 24 bytes per element, write-allocate traffic not counted), with
// kernels::cpu_threads() OpenMP threads per rank. Per rank.
double measure_memory_gbs(parallel::Comm& world, int64_t array_bytes, const TimingPolicy& timing);

// Half a round trip, in seconds, of a `bytes` ping-pong between ranks 2i and 2i + 1, all pairs at
// once (a last odd rank sits out), through world.send / world.recv. The slowest pair's.
// REQUIRES: world.size() >= 2, bytes a positive multiple of 4.
double measure_ping_pong_s(parallel::Comm& world, int64_t bytes, const TimingPolicy& timing);

// Effective per-rank GB/s (bytes_per_rank / seconds) of one all_to_all_v in groups of
// `group_size` consecutive ranks (all groups at once; the ranks of a last, smaller group sit
// out), each rank's bytes_per_rank split evenly over its group, its own slice included (as the
// expert dispatch posts it). `group` is this rank's group of world split into those groups
// (make_consecutive_groups).
// REQUIRES: bytes_per_rank a multiple of 4 * group_size.
double measure_all_to_all_gbs(parallel::Comm& world, parallel::Comm& group, int group_size,
                              int64_t bytes_per_rank, const TimingPolicy& timing);
// The data-parallel collectives of ZeRO-1 (the gradient reduce-scatter, the parameter
// all-gather), as the trainer posts them on fp32 buffers.
enum class ZeroCollective { kReduceScatter, kAllGather };
const char* zero_collective_name(ZeroCollective kind);  // "reduce_scatter" | "all_gather"

// Effective GB/s (bytes / seconds, `bytes` the whole buffer: every rank's slices together) of
// one reduce_scatter (fp32 sum) or all_gather in groups of `group_size` consecutive ranks, as
// measure_all_to_all_gbs runs its groups. On CPUs this is far below the point-to-point
// bandwidth: the sum is the receiving rank's work and shared memory copies each slice twice.
// REQUIRES: bytes a positive multiple of 4 * group_size.
double measure_zero_collective_gbs(parallel::Comm& world, parallel::Comm& group, int group_size,
                                   ZeroCollective kind, int64_t bytes,
                                   const TimingPolicy& timing);
// What synchronising costs beyond the work priced: seconds per exchange that a step of
// synchronous phases loses to the ranks not finishing a phase together (their cores' pace,
// interrupts and, where ranks outnumber cores, the OS time-sharing the cores among them).
// Every rank runs `iterations` phases of the same work (fp32 256 x 256 x 256 GEMMs, as many as
// take `phase_s` with all ranks computing at once), each followed by a small all_to_all_v in
// groups of `group_size` consecutive ranks that the phase waits for, as a training step's
// pieces wait for the expert exchange. Returns mean(phase + exchange) - C - E, the slowest
// rank's: C the slowest rank's median phase alone, E the slowest rank's median of the same
// exchanges back to back (what the planner prices them at). Noise can make it slightly
// negative. REQUIRES: group_size >= 2, phase_s > 0, iterations >= 1.
double measure_sync_loss_s(kernels::Backend& backend, parallel::Comm& world,
                           parallel::Comm& group, int group_size, double phase_s,
                           int iterations);
// world split into groups of `group_size` consecutive ranks (a collective); the last group has
// the remaining ranks when group_size does not divide world.size().
std::unique_ptr<parallel::Comm> make_consecutive_groups(parallel::Comm& world, int group_size);

}  // namespace tessera::cluster
