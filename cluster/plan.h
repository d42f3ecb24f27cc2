// The planner: what a recipe's layout costs on a cluster (cluster_spec.h) before a device is spent.
//
// Memory per rank is the trainer's own allocation plan (trainer/memory_plan.h, what --dry-run
// prints). Time: every model chunk's forward, input-gradient and weight-gradient work per
// micro-batch is priced from its GEMM shapes (trainer/flop_count.h) at the cluster's measured
// GEMM throughput of the nearest shape (or the peak), the attention core likewise, element-wise
// passes as memory traffic at device.memory_gbs; MoE layers add a dispatch and a combine
// all-to-all each way (balanced routing; node-limited fan-out across nodes). Each instruction's
// time comes from running the trainer's own step policy over the blocks' real pieces on a virtual
// clock (plan_pieces.h: an FB pair hides what run_overlapped's interleaving hides); the schedule's
// instruction lists are then replayed (parallel/schedule_cost.h) with these per-stage times and
// the pipeline messages' transfer times. After the pipeline: the ZeRO-1 gradient reduce-scatter's
// last bucket (the rest overlaps the backward), the optimizer step (memory traffic) and the
// parameter all-gather over the data and expert-data groups (measured rates inside a node where
// the cluster file has them, else ring formulas).
#pragma once

#include <string>
#include <vector>

#include "cluster/cluster_spec.h"
#include "cluster/plan_pieces.h"
#include "parallel/schedule.h"
#include "parallel/schedule_cost.h"
#include "trainer/memory_plan.h"
#include "trainer/recipe.h"

namespace tessera::cluster {

// Seconds per micro-batch of one model chunk on one stage.
struct ChunkCost {
  int stage = 0, chunk = 0;
  std::string layers;  // "layers 0-3 + embedding", for the report
  double forward = 0, backward_input = 0, backward_weight = 0;  // compute
  double forward_comm = 0, backward_comm = 0;                   // expert all-to-all, exposed alone
};

struct Plan {
  std::string recipe, cluster;
  std::string precision, schedule;
  int pp = 1, dp = 1, ep = 1, micro_batches = 1, virtual_stages = 1, world = 1;
  int ep_nodes = 1;                  // nodes one EP group spans
  bool node_aware_dispatch = false;  // the expert exchanges cross nodes once per node (the
                                     // recipe's parallel.node_aware_dispatch, `auto` resolved)
  int64_t tokens_per_step = 0;
  double training_flops_per_token = 0;

  // Time.
  double step_s = 0;            // pipeline + ZeRO + optimizer + step tail
  double pipeline_s = 0;        // the replayed schedule's makespan
  double bubble_fraction = 0;   // of the pipeline: stage-time idle (waits and exposed transfers)
  double exposed_comm_s = 0;    // communication the critical stage waits for (all-to-all not
                                // hidden by an FB pair, pipeline transfers, ZeRO tail)
  double optimizer_s = 0;       // AdamW over this rank's shards
  double zero_s = 0;            // exposed reduce-scatter tail + parameter all-gather
  double step_tail_s = 0;       // zeroing gradients, expert loads, the step's small all-reduces
  double tokens_per_s = 0;
  double mfu = 0;               // training FLOPs per second / (world x peak at the precision)
  double gpu_hours_per_trillion_tokens = 0;
  double days_per_trillion_tokens = 0;
  std::vector<ChunkCost> chunks;

  // Memory (the trainer's allocation plan).
  std::vector<trainer::RankMemory> memory;
  double peak_memory_gib = 0;
  int peak_memory_rank = 0;
  double device_memory_gib = 0;
  bool fits = true;
  std::string verdict;  // "fits: ..." or "does not fit: ..." naming the rank and the largest term

  // Assumptions worth a user's attention (GEMMs at the peak for want of measurements, ...).
  std::vector<std::string> notes;

  parallel::Schedule schedule_lists;
  parallel::SimulatedRun run;
  // With PlanOptions::pieces: [stage][index into its list] -> the steps of that instruction
  // (empty for sends and receives), for the predicted trace.
  std::vector<std::vector<std::vector<PieceSpan>>> pieces;
};

struct PlanOptions {
  // Plan the memory of one rank per stage (all ranks of a stage plan alike): Plan::memory then
  // holds pp entries. For the search, where large worlds make the full plan slow.
  bool memory_per_stage = false;
  // Keep every instruction's pieces, waits and exchanges (Plan::pieces) for the trace.
  bool pieces = false;
  // Routing imbalance under expert parallelism: the busiest EP rank's routed rows over the EP
  // ranks' mean (a run's metrics report it: expert_ep_rank_load_max_over_mean). The EP group
  // waits for that rank, so its routed experts and exchanges are priced at this many times the
  // balanced rows (at most ep: every row on one rank; on time-shared CPU cores its compute
  // less: the lighter ranks, done, lend it their cores). 1 = balanced routing.
  double expert_imbalance = 1.0;
};

// Throws trainer::RecipeError (the layout cannot run) or ClusterSpecError (the recipe needs more
// devices than the cluster has).
Plan make_plan(const trainer::Recipe& recipe, const ClusterSpec& cluster,
               const PlanOptions& options = {});

std::string format_plan(const Plan& plan);  // the human report
std::string plan_json(const Plan& plan);    // one JSON object (plan_command's --json)

}  // namespace tessera::cluster
