#include "cluster/plan.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "cluster/plan_pieces.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule_registry.h"
#include "parallel/schedule_time_sharing.h"
#include "trainer/flop_count.h"
#include "trainer/layers/moe_block.h"
#include "trainer/model.h"
#include "trainer/parallel_layout.h"

namespace tessera::cluster {
namespace {

using trainer::ComputeUnit;
using trainer::LinearShape;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Bytes per element of what travels: what MoeBlock sends (trainer/layers/moe_block.h, "Wire
// precision"; V3 report §3.3.2). fp8: the dispatch (both node-aware hops) e4m3 with one fp32 scale
// per 128 values, the combine bf16; the backward alike: dispatch grads fp8, combine grads bf16.
// bf16: bf16 rows, except the combine grads: fp32. Both backward pieces are priced at the one
// figure `backward`, so it is their mean. Node-aware dispatch's across-node hops carry fp32
// whatever the precision: the combine's and the combine grads' per-node partial sums, and the
// dispatch grads' ungated dy rows (the forwarder gates them before they are rounded) --
// `combine_across`, `backward_across`. (`pipeline`, the stage boundaries: as before.)
struct WireBytes {
  double dispatch = 4, combine = 4, backward = 4, pipeline = 4;
  double combine_across = 4, backward_across = 4;  // node-aware's across-node hops
};
WireBytes wire_bytes(const std::string& precision) {
  const double fp8 = 1.0 + 4.0 / 128.0;
  if (precision == "fp8") return {fp8, 2, (fp8 + 2) / 2, 2, 4, 4};
  if (precision == "bf16") return {2, 2, (2 + 4) / 2.0, 2, 4, 4};
  return {};
}

double log_distance(double a, double b) { return std::abs(std::log(a) - std::log(b)); }

// Prices work on one device of the cluster; collects the assumptions it had to make.
class Pricing {
 public:
  Pricing(const ClusterSpec& cluster, std::set<std::string>& notes) : c_(cluster), notes_(notes) {}

  // The measured communication point nearest to (ranks, bytes): ranks weigh 4x (a rank count's
  // rate does not carry over to another); a note when the ranks differ.
  template <typename Point>
  const Point& nearest_measured(const std::vector<Point>& points, int64_t Point::*bytes_of,
                                const std::string& what, int ranks, double bytes) const {
    const Point* best = nullptr;
    double best_d = std::numeric_limits<double>::infinity();
    for (const Point& p : points) {
      const double d = 4.0 * log_distance(ranks, p.ranks) + log_distance(bytes, p.*bytes_of);
      if (d < best_d) best_d = d, best = &p;
    }
    if (best->ranks != ranks) {
      notes_.insert(what + " over " + std::to_string(ranks) + " ranks priced at the measured " +
                    std::to_string(best->ranks) + "-rank rate");
    }
    return *best;
  }

  double gemm(const std::string& precision, const std::string& layout, double m, double n,
              double k) const {
    if (m <= 0 || n <= 0 || k <= 0) return 0.0;
    const double flops = 2.0 * m * n * k;
    const GemmPoint* best = nullptr;
    for (int pass = 0; pass < 2 && best == nullptr; ++pass) {  // own layout first, then any
      double best_d = std::numeric_limits<double>::infinity();
      for (const GemmPoint& p : c_.device.gemm) {
        if (p.precision != precision || (pass == 0 && p.layout != layout)) continue;
        const double d = log_distance(m, p.m) + log_distance(n, p.n) + log_distance(k, p.k);
        if (d < best_d) best_d = d, best = &p;
      }
    }
    if (best == nullptr) {
      notes_.insert(precision + " GEMMs at the device's peak (" +
                    num(c_.device.peak_tflops(precision)) +
                    " TFLOP/s): the cluster file has no measured " + precision + " GEMM points");
      return flops / (c_.device.peak_tflops(precision) * 1e12);
    }
    return flops / (best->tflops * 1e12);
  }

  // The causal attention core of `tokens` tokens (sequences of seq_len), forward or backward.
  double attention(const trainer::AttentionCore& a, int64_t seq_len, double tokens,
                   const std::string& precision, bool backward) const {
    if (a.heads == 0) return 0.0;
    const double flops = a.forward_flops_per_token(seq_len) * tokens * (backward ? 2.0 : 1.0);
    const AttentionPoint* best = nullptr;
    double best_d = std::numeric_limits<double>::infinity();
    for (const AttentionPoint& p : c_.device.attention) {
      const double d = log_distance(seq_len, p.seq_len) + log_distance(a.qk_dim, p.head_dim);
      if (d < best_d) best_d = d, best = &p;
    }
    if (best != nullptr) {
      return flops / ((backward ? best->backward_tflops : best->forward_tflops) * 1e12);
    }
    // No measurement: the core's two GEMMs per head at the GEMM rate of their shape.
    const double per_gemm = gemm(precision, backward ? "nn" : "nt", static_cast<double>(seq_len),
                                 static_cast<double>(seq_len), static_cast<double>(a.qk_dim));
    const double full_flops = 2.0 * seq_len * seq_len * a.qk_dim;
    return flops * (per_gemm / full_flops);
  }

  double traffic(double bytes) const { return bytes / (c_.device.memory_gbs * 1e9); }

  double p2p(double bytes, bool same_node) const {
    const NetworkSpec& n = c_.network;
    return same_node ? n.intra_node_latency_us * 1e-6 + bytes / (n.intra_node_gbs * 1e9)
                     : n.inter_node_latency_us * 1e-6 + bytes / (n.inter_node_gbs * 1e9);
  }

  // One all-to-all over an EP group of `ranks` (`nodes` nodes): every rank sends `rows` rows of
  // `row_bytes` (a token's row once per expert, `rows_fanout` experts a token); balanced routing
  // sends (ranks - 1) / ranks of them off the rank. `flat` is the plain exchange: every row
  // straight to its expert's rank, (nodes - 1) / nodes of them across nodes (the slower link
  // sets its time). `across` and `within` are node-aware dispatch's two hops, each its own
  // exchange: a token crosses to at most `nodes_per_row` nodes once each, then fans out inside.
  struct AllToAll {
    double flat = 0, across = 0, within = 0;
  };
  AllToAll all_to_all(double rows, double row_bytes, int ranks, int nodes, double rows_fanout,
                      double nodes_per_row) const {
    if (ranks <= 1 || rows <= 0) return {};
    if (!c_.network.all_to_all.empty()) {  // measured: bytes_per_rank counts the own slice too
      const double all = rows * row_bytes;
      const AllToAllPoint& best = nearest_measured(
          c_.network.all_to_all, &AllToAllPoint::bytes_per_rank, "all-to-all", ranks, all);
      const double t = all / (best.gbs * 1e9);
      return {t, t, 0.0};
    }
    const NetworkSpec& n = c_.network;
    const double off_rank = rows * row_bytes * (ranks - 1) / ranks;
    if (nodes <= 1) {
      const double t = n.intra_node_latency_us * 1e-6 + off_rank / (n.intra_node_gbs * 1e9);
      return {t, t, 0.0};
    }
    const double per_node = static_cast<double>(ranks) / nodes;
    const auto across_s = [&](double bytes) {
      return n.inter_node_latency_us * 1e-6 + bytes / (n.inter_node_gbs * 1e9);
    };
    const auto within_s = [&](double bytes) {
      return n.intra_node_latency_us * 1e-6 + bytes / (n.intra_node_gbs * 1e9);
    };
    const double flat = std::max(across_s(rows * row_bytes * (nodes - 1) / nodes),
                                 within_s(rows * row_bytes * (per_node - 1) / ranks));
    const double cross = rows / rows_fanout * nodes_per_row * (nodes - 1) / nodes * row_bytes;
    return {flat, across_s(cross), within_s(rows * row_bytes * (per_node - 1) / per_node)};
  }

  double latency(bool across_nodes) const {
    return (across_nodes ? c_.network.inter_node_latency_us : c_.network.intra_node_latency_us) *
           1e-6;
  }

  // network.sync_loss (cluster_spec.h's sync_loss_s), with a note where the file measured other
  // group sizes but not this one.
  double sync_loss(int ranks, double phase_s) const {
    bool measured = false;
    const double loss = sync_loss_s(c_.network, ranks, phase_s, &measured);
    if (!measured && !c_.network.sync_loss.empty()) {
      notes_.insert("no synchronisation loss priced for groups of " + std::to_string(ranks) +
                    " ranks: network.sync_loss measured other group sizes only");
    }
    return loss;
  }

  // ZeRO's reduce-scatter or all-gather of `bytes` (the whole buffer) over `ranks`: at the
  // measured rate of the nearest measured point of its kind (ranks first, then bytes) inside a
  // node, else by the ring formula.
  double zero_collective(const std::vector<CollectivePoint>& measured, const char* kind,
                         double bytes, int ranks, bool crosses_nodes) const {
    if (ranks <= 1 || bytes <= 0) return 0.0;
    if (crosses_nodes || measured.empty()) return ring(bytes, ranks, crosses_nodes);
    const CollectivePoint& best =
        nearest_measured(measured, &CollectivePoint::bytes, kind, ranks, bytes);
    return bytes / (best.gbs * 1e9);
  }
  double reduce_scatter(double bytes, int ranks, bool crosses_nodes) const {
    return zero_collective(c_.network.reduce_scatter, "reduce_scatter", bytes, ranks,
                           crosses_nodes);
  }
  double all_gather(double bytes, int ranks, bool crosses_nodes) const {
    return zero_collective(c_.network.all_gather, "all_gather", bytes, ranks, crosses_nodes);
  }

  // Ring reduce-scatter or all-gather of `bytes` (the whole buffer) over `ranks`.
  double ring(double bytes, int ranks, bool crosses_nodes) const {
    if (ranks <= 1 || bytes <= 0) return 0.0;
    const NetworkSpec& n = c_.network;
    const double gbs = crosses_nodes ? n.inter_node_gbs : n.intra_node_gbs;
    const double lat = (crosses_nodes ? n.inter_node_latency_us : n.intra_node_latency_us) * 1e-6;
    return (ranks - 1) * lat + bytes * (ranks - 1) / ranks / (gbs * 1e9);
  }

  static std::string num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", x);
    return buf;
  }

 private:
  const ClusterSpec& c_;
  std::set<std::string>& notes_;
};

// Where a linear map's work goes (plan_pieces.h's kinds), by its parameter name.
PhaseCost& kind_of(const LinearShape& l, UnitCost& u, PhaseCost& glue) {
  auto has = [&](const char* part) { return l.name.find(part) != std::string::npos; };
  if (l.routed_expert) return u.experts;
  if (has(".attn.")) return u.attention;
  if (has(".moe.gate")) return u.router;
  if (has(".moe.shared.")) return u.shared;
  if (has(".ffn.")) return u.ffn;
  return glue;  // the head, MTP's eh_proj and its pass through the shared head
}

// The EP group's busiest rank against the mean: its routed rows, and its routed compute's time.
struct Imbalance {
  double rows = 1, compute = 1;
};

// On CPU cores the ranks time-share, the EP group's lighter ranks, done with their routed rows,
// lend their cores (ideal sharing, as the pipeline's replay): the busiest rank's routed compute
// time as a multiple of the balanced one, for `rows` times the mean rows. The lighter ranks are
// taken as equally loaded ((ep - rows) / (ep - 1) of the mean); until they finish every rank
// runs at the priced speed, then the busiest computes beside the node's other ranks only (those
// of other stages, taken as computing).
double time_shared_compute(double rows, int ep, int64_t ep_ranks_on_node, int64_t threads_per_rank,
                           int64_t node_threads, int64_t cores) {
  if (rows <= 1 || ep <= 1) return rows;
  const double light = (ep - rows) / (ep - 1);
  const int64_t alone = node_threads - (ep_ranks_on_node - 1) * threads_per_rank;
  const double c = static_cast<double>(cores);
  const double speed = parallel::core_share(static_cast<double>(alone), c) /
                       parallel::core_share(static_cast<double>(node_threads), c);
  return light + (rows - light) / speed;
}

// One compute unit's work on `tokens` tokens; what belongs to no block (head, MTP's projection)
// goes to `glue`.
UnitCost price_unit(const ComputeUnit& u, const trainer::Recipe& r, double tokens,
                    const Pricing& price, const WireBytes& wire, int ep_nodes, bool node_aware,
                    Imbalance imbalance, PhaseCost& glue) {
  const trainer::ModelConfig& m = r.model;
  const std::string& precision = r.precision.compute;
  const int ep = static_cast<int>(r.parallel.ep);
  UnitCost cost;
  // What V3 keeps in higher precision (head, router gate, attention core) runs in bf16 on the
  // tensor cores once the blocks are below fp32; fp32 recipes run everything in fp32.
  const std::string higher = precision == "fp32" ? "fp32" : "bf16";
  for (const LinearShape& l : u.linears) {
    const std::string p = l.block_precision ? precision : higher;
    // A routed expert's rows under EP: this rank's n_experts / ep experts receive every EP
    // peer's rows for them (balanced: tokens x top_k / n_experts x ep each), in one segment per
    // sender (node-aware: per forwarder of the node), and the grouped op runs one GEMM per
    // segment: that is the shape priced.
    const double segments = !l.routed_expert ? 1.0
                            : node_aware     ? static_cast<double>(ep) / std::max(1, ep_nodes)
                                             : static_cast<double>(ep);
    const double count = l.routed_expert ? static_cast<double>(l.count) / ep * segments : l.count;
    const double rows = tokens * l.rows_per_token * (l.routed_expert ? ep / segments : 1.0);
    PhaseCost& k = kind_of(l, cost, glue);
    k.f += count * price.gemm(p, "nt", rows, l.out, l.in);
    k.b += count * price.gemm(p, "nn", rows, l.in, l.out);
    k.w += count * price.gemm(p, "tn", l.out, l.in, rows);
  }
  cost.attention.f += price.attention(u.attention, r.train.seq_len, tokens, higher, false);
  cost.attention.b += price.attention(u.attention, r.train.seq_len, tokens, higher, true);

  // Element-wise passes, fp32 values read + written per token (the trainer's activations are
  // fp32); the backward touches about twice as much. Attention: its norm, RoPE on q and k, the
  // residual add. FFN: its norm, SwiGLU over the hidden width, the residual add; MoE splits them
  // over the router (norm, scores, top-k), the shared and routed experts' SwiGLU, and the
  // permute / unpermute of top_k rows with the residual.
  auto traffic = [&](PhaseCost& k, double values) {
    k.f += price.traffic(4.0 * values * tokens);
    k.b += price.traffic(8.0 * values * tokens);
  };
  if (u.attention.heads > 0) {
    const double rope = m.attention == "mla" ? m.qk_rope_head_dim : u.attention.qk_dim;
    traffic(cost.attention, 2 * u.dim + 3 * u.dim + 2 * 2 * u.attention.heads * rope);
    if (u.moe) {
      traffic(cost.router, 2 * u.dim + 4 * m.n_experts);
      traffic(cost.shared, 3 * m.n_shared_experts * m.moe_inter_dim);
      traffic(cost.experts, 3 * u.top_k * m.moe_inter_dim);
      // The routed rows' gather (top_k rows a token) runs in the trainer's route piece, so it is
      // priced there (predicted and measured pieces compare); its backward, a scatter-add, with
      // the unpermute's.
      const double gather = 2 * u.top_k * u.dim;
      traffic(cost.permute, (u.top_k + 1) * u.dim + 3 * u.dim);
      cost.router.f += price.traffic(4.0 * gather * tokens);
      cost.permute.b += price.traffic(8.0 * gather * tokens);
    } else {
      traffic(cost.ffn, 2 * u.dim + 3 * u.hidden + 3 * u.dim);
    }
  }
  // precision fp8 keeps the fp8 linears' inputs and the SwiGLU inputs in fp8
  // (trainer/layers/saved_activation.h): the forward quantises them (4 bytes read, 1 written a
  // value) and the pieces that need one dequantise it (1 read, 4 written): the weight-gradient
  // piece a linear's input; a SwiGLU input both backward pieces, the weight-gradient one also
  // recomputing the output for W2's gradient (2 values read, 1 written per hidden unit).
  if (precision == "fp8" && u.attention.heads > 0) {
    auto linear_input = [&](PhaseCost& k, double values) {
      k.f += price.traffic(5.0 * values * tokens);
      k.w += price.traffic(5.0 * values * tokens);
    };
    auto swiglu_input = [&](PhaseCost& k, double hidden) {
      k.f += price.traffic(5.0 * 2 * hidden * tokens);
      k.b += price.traffic(5.0 * 2 * hidden * tokens);
      k.w += price.traffic((5.0 * 2 + 12.0) * hidden * tokens);
    };
    const double latents = m.attention == "mla" ? m.q_lora_rank + m.kv_lora_rank : 0;
    linear_input(cost.attention, u.dim + latents);
    if (u.moe) {
      swiglu_input(cost.shared, static_cast<double>(m.n_shared_experts) * m.moe_inter_dim);
      swiglu_input(cost.experts, static_cast<double>(u.top_k) * m.moe_inter_dim);
    } else {
      linear_input(cost.ffn, u.dim);
      swiglu_input(cost.ffn, u.hidden);
    }
  }
  if (u.name == "head") {  // final norm, logits, softmax cross-entropy
    const double values = 2 * u.dim + 3 * m.vocab_size;
    glue.f += price.traffic(4.0 * values * tokens);
    glue.b += price.traffic(8.0 * values * tokens);
  }
  if (u.moe) {  // the busiest EP rank's routed rows (GEMMs priced at the balanced shapes)
    cost.experts.f *= imbalance.compute, cost.experts.b *= imbalance.compute;
    cost.experts.w *= imbalance.compute;
  }
  if (u.moe && ep > 1) {
    const double rows = tokens * m.top_k * imbalance.rows;
    const double row = static_cast<double>(m.dim);
    // Node-limited routing: a token reaches experts on at most topk_group nodes when the groups
    // are the nodes (model.n_group = nodes), else on up to top_k.
    const double nodes_per_row =
        std::min<double>({static_cast<double>(m.top_k),
                          m.n_group == ep_nodes ? static_cast<double>(m.topk_group) : 1e9,
                          static_cast<double>(ep_nodes)});
    auto a2a = [&](double bytes) {
      return price.all_to_all(rows, row * bytes, ep, ep_nodes, static_cast<double>(m.top_k),
                              nodes_per_row);
    };
    const Pricing::AllToAll d = a2a(wire.dispatch), c = a2a(wire.combine), b = a2a(wire.backward);
    if (node_aware) {  // the across-node hops of partial sums and dy rows: their own formats
      cost.dispatch = d.across, cost.combine = a2a(wire.combine_across).across;
      cost.backward = a2a(wire.backward_across).across;
      cost.dispatch_within = d.within, cost.combine_within = c.within;
      cost.backward_within = b.within;
    } else {
      cost.dispatch = d.flat, cost.combine = c.flat, cost.backward = b.flat;
    }
    cost.small = price.latency(ep_nodes > 1);
  }
  return cost;
}

std::string layer_range(const trainer::ModelChunkSpec& s) {
  std::string out;
  if (s.embedding) out += "embedding + ";
  if (s.end_layer > s.first_layer) {
    out += s.end_layer - s.first_layer == 1
               ? "layer " + std::to_string(s.first_layer)
               : "layers " + std::to_string(s.first_layer) + "-" + std::to_string(s.end_layer - 1);
  }
  if (s.head) out += std::string(out.empty() || out.back() == ' ' ? "" : " + ") + "head";
  if (out.size() >= 3 && out.compare(out.size() - 3, 3, " + ") == 0) out.resize(out.size() - 3);
  return out;
}

}  // namespace

Plan make_plan(const trainer::Recipe& recipe_in, const ClusterSpec& cluster,
               const PlanOptions& options) {
  // The recipe runs on the cluster's devices: its node size is the cluster's.
  trainer::Recipe recipe = recipe_in;
  recipe.parallel.ranks_per_node = cluster.gpus_per_node;
  const trainer::ParallelConfig& par = recipe.parallel;
  Plan plan;
  plan.recipe = recipe.source;
  plan.cluster = cluster.source.empty() ? cluster.name : cluster.source;
  plan.precision = recipe.precision.compute;
  plan.schedule = par.schedule;
  plan.pp = static_cast<int>(par.pp);
  plan.dp = static_cast<int>(par.dp);
  plan.ep = static_cast<int>(par.ep);
  plan.micro_batches = static_cast<int>(par.micro_batches);
  plan.virtual_stages = static_cast<int>(par.virtual_stages);
  plan.world = plan.pp * plan.dp;
  trainer::validate_layout(recipe, plan.world, trainer::recipe_ranks_per_node(recipe, plan.world));
  if (plan.world > cluster.devices()) {
    throw ClusterSpecError(
        recipe.source + ": parallel.pp * parallel.dp = " + std::to_string(plan.world) +
        " ranks, but " + plan.cluster + " has " + std::to_string(cluster.devices()) + " devices (" +
        std::to_string(cluster.nodes) + " nodes x " + std::to_string(cluster.gpus_per_node) + ")");
  }
  plan.tokens_per_step = recipe.train.global_batch * recipe.train.seq_len;
  plan.training_flops_per_token =
      trainer::flops_per_token(recipe.model, recipe.train.seq_len).training;

  std::set<std::string> notes_early;
  // Memory: the trainer's allocation plan on this kind of device.
  const kernels::Device device =
      cluster.device.kind == "cpu" ? kernels::Device::kCPU : kernels::Device::kCUDA;
  plan.memory = options.memory_per_stage ? trainer::plan_memory_per_stage(recipe, device)
                                         : trainer::plan_memory(recipe, device);
  plan.device_memory_gib = cluster.device.memory_gib;
  for (const trainer::RankMemory& m : plan.memory) {
    const double gib = m.total() / kGiB;
    if (gib > plan.peak_memory_gib) plan.peak_memory_gib = gib, plan.peak_memory_rank = m.rank;
  }
  {
    const trainer::RankMemory& m = *std::find_if(
        plan.memory.begin(), plan.memory.end(),
        [&](const trainer::RankMemory& r) { return r.rank == plan.peak_memory_rank; });
    const trainer::MemoryTerm largest = trainer::largest_memory_term(m);
    char buf[256];
    plan.fits = plan.peak_memory_gib <= cluster.device.memory_gib;
    std::snprintf(buf, sizeof(buf),
                  "%s: rank %d needs %.1f GiB of %.1f GiB (largest term: %s, %.1f GiB)",
                  plan.fits ? "fits" : "does not fit", m.rank, plan.peak_memory_gib,
                  cluster.device.memory_gib, largest.name.c_str(), largest.bytes / kGiB);
    plan.verdict = buf;
    if (!plan.fits && largest.name == "activations") {
      notes_early.insert(
          "activations are the trainer's arenas: fp32, saved activations and backward workspaces "
          "of every micro-batch in flight, no recomputation, expert-side buffers sized for the "
          "worst-case routing (trainer/layers/moe_block.h)");
    }
  }

  // Time: every (stage, chunk)'s costs per micro-batch.
  std::set<std::string> notes = std::move(notes_early);
  Pricing price(cluster, notes);
  const WireBytes wire = wire_bytes(recipe.precision.compute);
  const parallel::LayoutSpec spec = trainer::recipe_layout_spec(recipe, plan.world);
  const parallel::RankGrid grid(spec);
  plan.schedule_lists =
      parallel::make_schedule(par.schedule, plan.pp, plan.micro_batches, plan.virtual_stages);
  const trainer::ModelCompute compute = trainer::describe_compute(recipe.model);
  const double tokens = static_cast<double>(recipe.train.global_batch) /
                        static_cast<double>(par.dp * par.micro_batches) *
                        static_cast<double>(recipe.train.seq_len);
  const int per_node = static_cast<int>(cluster.gpus_per_node);
  const int ep_nodes = std::max(1, (plan.ep + per_node - 1) / per_node);
  plan.ep_nodes = ep_nodes;
  if (!(options.expert_imbalance >= 1.0)) {
    throw std::invalid_argument("expert imbalance " + Pricing::num(options.expert_imbalance) +
                                " is below 1 (the busiest EP rank has at least the mean)");
  }
  // CPU ranks that leave no core to spare run MPI's copies and sums on their own cores; with
  // more threads than cores they also time-share them (a note, below).
  const int64_t ranks_per_node = std::min<int64_t>(plan.world, cluster.gpus_per_node);
  const int64_t threads = ranks_per_node * std::max<int64_t>(1, recipe.run.cpu_threads);
  const int64_t cpu_cores = cluster.device.kind == "cpu" ? cluster.device.node_cores : 0;
  const bool exchanges_take_cores = cpu_cores > 0 && threads >= cpu_cores;
  const bool cores_time_shared = cpu_cores > 0 && threads > cpu_cores;
  // At most every row on one rank; with one EP rank there is nothing to wait for.
  Imbalance imbalance;
  imbalance.rows = std::min(options.expert_imbalance, static_cast<double>(plan.ep));
  imbalance.compute =
      cores_time_shared
          ? time_shared_compute(imbalance.rows, plan.ep, std::min<int64_t>(plan.ep, ranks_per_node),
                                threads / ranks_per_node, threads, cpu_cores)
          : imbalance.rows;
  // Every (stage, chunk): its blocks (their pieces, with this rank's node-aware dispatch, as the
  // trainer builds them), each unit's work, the glue; then its instructions timed.
  std::vector<std::unique_ptr<trainer::Model>> models;
  std::vector<std::vector<ChunkWork>> work(static_cast<size_t>(plan.pp));
  for (int s = 0; s < plan.pp; ++s) {
    const int rank = s * plan.dp;  // stage-major: the stage's first replica
    const trainer::ModelPart part = trainer::recipe_model_part(recipe, s, plan.ep, 0);
    models.push_back(trainer::Model::Describe(recipe.model, part));
    trainer::Model& model = *models.back();
    const trainer::NodeDispatch nodes = trainer::recipe_node_dispatch(recipe, grid, rank);
    plan.node_aware_dispatch = plan.node_aware_dispatch || nodes.node_aware;
    for (trainer::MoeBlock* moe : model.moe_blocks()) {
      moe->set_nodes(nodes.ep_ranks_per_node, nodes.node_aware);
    }
    for (size_t c = 0; c < part.chunks.size(); ++c) {
      const trainer::ModelChunkSpec& cs = part.chunks[c];
      ChunkWork w;
      w.blocks = model.chunk_blocks(static_cast<int>(c));
      w.first_layer = cs.first_layer;
      w.exchanges_take_cores = exchanges_take_cores;
      if (plan.ep > 1) {
        w.sync_loss = [&price, ep = plan.ep](double phase_s) {
          return price.sync_loss(ep, phase_s);
        };
      }
      for (int l = cs.first_layer; l < cs.end_layer; ++l) {
        w.units.push_back(price_unit(compute.layers[static_cast<size_t>(l)], recipe, tokens, price,
                                     wire, ep_nodes, nodes.node_aware, imbalance, w.head));
      }
      if (cs.embedding) {  // the lookup, and its gradient scattered back
        w.embedding.f = price.traffic(2.0 * 4.0 * recipe.model.dim * tokens);
        w.embedding.w = price.traffic(2.0 * 4.0 * recipe.model.dim * tokens);
      }
      if (cs.head) {
        price_unit(compute.head, recipe, tokens, price, wire, ep_nodes, nodes.node_aware, imbalance,
                   w.head);
        for (const ComputeUnit& u : compute.mtp) {
          w.units.push_back(
              price_unit(u, recipe, tokens, price, wire, ep_nodes, nodes.node_aware, imbalance,
                         w.head));
        }
      }
      if (w.blocks.size() != 2 * w.units.size()) {
        throw std::logic_error("planner: stage " + std::to_string(s) + " chunk " +
                               std::to_string(c) + " has " + std::to_string(w.blocks.size()) +
                               " blocks for " + std::to_string(w.units.size()) + " layers");
      }
      work[static_cast<size_t>(s)].push_back(std::move(w));
    }
  }

  // Each instruction's time on its stage, by running the trainer's step policy on a clock
  // (plan_pieces.h); cached, as the lists repeat them per micro-batch.
  const bool overlap = par.overlap;
  struct ChunkTimes {
    Timed forward, backward_input, backward_weight, backward;
  };
  std::vector<std::vector<ChunkTimes>> times(static_cast<size_t>(plan.pp));
  for (int s = 0; s < plan.pp; ++s) {
    for (size_t c = 0; c < work[static_cast<size_t>(s)].size(); ++c) {
      const ChunkWork& w = work[static_cast<size_t>(s)][c];
      ChunkTimes t{time_forward(w), time_backward_input(w), time_backward_weight(w),
                   time_backward(w)};
      times[static_cast<size_t>(s)].push_back(t);
      ChunkCost cost;
      cost.stage = s;
      cost.chunk = static_cast<int>(c);
      cost.layers = layer_range(models[static_cast<size_t>(s)]->part().chunks[c]);
      cost.forward = t.forward.compute;
      cost.backward_input = t.backward_input.compute;
      cost.backward_weight = t.backward_weight.compute;
      cost.forward_comm = t.forward.comm;
      cost.backward_comm = t.backward_input.comm;
      plan.chunks.push_back(cost);
    }
  }
  std::map<std::tuple<int, int, int>, Timed> pairs;
  auto timed = [&](int s, const parallel::Instruction& inst) -> const Timed& {
    using parallel::Op;
    static const Timed kNothing;
    const ChunkTimes& t = times[static_cast<size_t>(s)][static_cast<size_t>(inst.chunk)];
    switch (inst.op) {
      case Op::kForward:
        return t.forward;
      case Op::kBackward:
        return t.backward;
      case Op::kBackwardInput:
        return t.backward_input;
      case Op::kBackwardWeight:
        return t.backward_weight;
      case Op::kForwardBackward: {
        const auto key = std::make_tuple(s, inst.chunk, inst.chunk_b);
        auto it = pairs.find(key);
        if (it != pairs.end()) return it->second;
        const auto& ws = work[static_cast<size_t>(s)];
        Timed pair;
        if (overlap) {
          pair = time_forward_backward(ws[static_cast<size_t>(inst.chunk)],
                                       ws[static_cast<size_t>(inst.chunk_b)]);
        } else {  // F, then the full backward
          const Timed& b =
              times[static_cast<size_t>(s)][static_cast<size_t>(inst.chunk_b)].backward;
          pair = {t.forward.seconds + b.seconds, t.forward.waited + b.waited,
                  t.forward.compute + b.compute, t.forward.comm + b.comm,
                  b.exchanged() ? b.compute_since_exchange
                              : t.forward.compute_since_exchange + b.compute,
                  {}};
          for (PieceSpan span : t.forward.spans) {  // the pair's forward is list 1
            span.list = 1;
            pair.spans.push_back(span);
          }
          for (PieceSpan span : b.spans) {  // its backward, list 0, after the forward
            span.start += t.forward.seconds;
            span.end += t.forward.seconds;
            pair.spans.push_back(span);
          }
        }
        return pairs.emplace(key, std::move(pair)).first->second;
      }
      default:
        return kNothing;
    }
  };
  auto duration = [&](int s, const parallel::Instruction& inst) { return timed(s, inst).seconds; };
  const double boundary_bytes = tokens * static_cast<double>(recipe.model.dim) * wire.pipeline;
  auto transfer = [&](int s, const parallel::Instruction& send) {
    // Stage-major ranks: stage s's first replica is rank s * dp.
    const bool same_node = (s * plan.dp) / per_node == (send.peer * plan.dp) / per_node;
    return price.p2p(boundary_bytes, same_node);
  };
  const parallel::InstructionCosts costs{duration, transfer};
  if (cores_time_shared) {
    // The calibration measured every rank computing at once; a rank idle in the schedule's
    // bubble lends its core to the others (schedule_time_sharing.h). Stage-major ranks.
    parallel::CoreSharing sharing;
    sharing.threads_per_rank = static_cast<int>(threads / ranks_per_node);
    sharing.cores_per_node = static_cast<int>(cpu_cores);
    const int nodes = (plan.world + per_node - 1) / per_node;
    for (int s = 0; s < plan.pp; ++s) {
      auto& row = sharing.ranks_on_node.emplace_back(static_cast<size_t>(nodes), 0);
      for (int d = 0; d < plan.dp; ++d) ++row[static_cast<size_t>((s * plan.dp + d) / per_node)];
    }
    plan.run = parallel::simulate_time_shared(plan.schedule_lists, costs, sharing);
  } else {
    plan.run = parallel::simulate_schedule(plan.schedule_lists, costs);
  }
  plan.pipeline_s = plan.run.makespan;
  plan.bubble_fraction = plan.run.bubble_fraction;
  if (options.pieces) {
    for (int s = 0; s < plan.pp; ++s) {
      const auto& list = plan.schedule_lists.per_stage[static_cast<size_t>(s)];
      auto& out = plan.pieces.emplace_back(list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        const Timed& t = timed(s, list[i]);
        out[i] = t.spans;
        // On time-shared cores an instruction's simulated span differs from its cost: its
        // pieces stretched to fit it (as if its speed were even over it).
        const auto [start, end] = plan.run.spans[static_cast<size_t>(s)][i];
        if (cores_time_shared && t.seconds > 0) {
          const double stretch = (end - start) / t.seconds;
          for (PieceSpan& p : out[i]) p.start *= stretch, p.end *= stretch;
        }
      }
    }
  }

  // Exposed communication on the busiest stage: what its compute thread waited for exchanges.
  const int busiest = static_cast<int>(
      std::max_element(plan.run.busy.begin(), plan.run.busy.end()) - plan.run.busy.begin());
  double exposed = 0.0;
  for (const parallel::Instruction& inst :
       plan.schedule_lists.per_stage[static_cast<size_t>(busiest)]) {
    if (parallel::is_compute(inst.op)) exposed += timed(busiest, inst).waited;
  }

  // After the pipeline: ZeRO-1 and the optimizer, per stage; the slowest stage sets the step.
  const int dense_dp = grid.group_size(parallel::GroupKind::kData);
  const int expert_dp = grid.group_size(parallel::GroupKind::kExpertData);
  const double bucket = par.grad_bucket_mb * 1024 * 1024;
  // A stage's replicas are consecutive ranks: its data and expert-data groups leave the node
  // when there are more replicas than devices on a node.
  const bool dp_crosses = plan.dp > per_node;
  const bool expert_dp_crosses = dp_crosses;
  for (int s = 0; s < plan.pp; ++s) {
    const trainer::ParamTable& params = models[static_cast<size_t>(s)]->params();
    const double dense = 4.0 * params.padded_region_numel(trainer::ParamRegion::kDense, dense_dp);
    const double expert =
        4.0 * params.padded_region_numel(trainer::ParamRegion::kExpert, expert_dp);
    // The gradient buckets' reduce-scatters overlap the backward but for the last one; where
    // exchanges take the ranks' cores, every bucket's sums and copies hold up the backward.
    const double scattered_dense = exchanges_take_cores ? dense : std::min(bucket, dense);
    const double scattered_expert = exchanges_take_cores ? expert : std::min(bucket, expert);
    // The last bucket's reduce-scatter waits for the data-parallel group's ranks to finish the
    // phase the stage ends its step with: its compute since it last waited for another rank (an
    // expert exchange or a pipeline receive; sends are posted, not waited for), the whole
    // step's for data parallelism alone.
    double phase = 0;
    const auto& list = plan.schedule_lists.per_stage[static_cast<size_t>(s)];
    for (size_t i = list.size(); i-- > 0;) {
      const parallel::Op op = list[i].op;
      if (op == parallel::Op::kSendActivation || op == parallel::Op::kSendGrad) continue;
      if (!parallel::is_compute(op)) break;  // a receive
      const Timed& t = timed(s, list[i]);
      phase += t.compute_since_exchange;
      if (t.exchanged()) break;
    }
    const double late = dense_dp > 1 ? price.sync_loss(dense_dp, phase) : 0.0;
    const double zero =
        late + price.reduce_scatter(scattered_dense, dense_dp, dp_crosses) +
        price.reduce_scatter(scattered_expert, expert_dp, expert_dp_crosses) +
        price.all_gather(dense, dense_dp, dp_crosses) +
        price.all_gather(expert, expert_dp, expert_dp_crosses);
    // AdamW reads parameter, gradient and two moments and writes the parameter and the moments,
    // per shard value: fp32 values and gradients, moments of optimizer.state_dtype.
    const double shard_values = dense / 4.0 / dense_dp + expert / 4.0 / expert_dp;
    const double moment_bytes = recipe.optimizer.state_dtype == "bf16" ? 2.0 : 4.0;
    const double optimizer = price.traffic((3.0 * 4.0 + 4.0 * moment_bytes) * shard_values);
    // The trainer's own per-step work beside the pipeline and ZeRO (trainer.cc): zeroing the
    // gradient buffer, the expert loads' data-parallel all-reduce, and the world all-reduces of
    // the step's scalars and metrics (trainer/step_stats.h: one before the optimizer, two
    // after), small enough to cost recursive doubling's latency.
    int64_t loads = 0;
    for (const trainer::MoeBlock* moe : models[static_cast<size_t>(s)]->moe_blocks()) {
      loads += moe->n_experts();
    }
    const auto small_all_reduce = [&](int ranks, bool crosses) {
      return ranks <= 1 ? 0.0 : 2.0 * std::ceil(std::log2(ranks)) * price.latency(crosses);
    };
    const double tail = price.traffic(4.0 * static_cast<double>(params.numel())) +
                        (loads > 0 ? 2.0 * price.ring(8.0 * static_cast<double>(loads), dense_dp,
                                                      dp_crosses)
                                   : 0.0) +
                        3.0 * small_all_reduce(plan.world, plan.world > per_node);
    plan.zero_s = std::max(plan.zero_s, zero);
    plan.optimizer_s = std::max(plan.optimizer_s, optimizer);
    plan.step_tail_s = std::max(plan.step_tail_s, tail);
  }
  plan.exposed_comm_s = exposed + plan.zero_s;
  plan.step_s = plan.pipeline_s + plan.zero_s + plan.optimizer_s + plan.step_tail_s;
  plan.tokens_per_s = static_cast<double>(plan.tokens_per_step) / plan.step_s;
  plan.mfu = plan.training_flops_per_token * plan.tokens_per_s /
             (plan.world * cluster.device.peak_tflops(plan.precision) * 1e12);
  plan.gpu_hours_per_trillion_tokens = plan.world * (1e12 / plan.tokens_per_s) / 3600.0;
  plan.days_per_trillion_tokens = 1e12 / plan.tokens_per_s / 86400.0;
  if (ep_nodes > 1) {
    notes.insert("expert all-to-all across " + std::to_string(ep_nodes) +
                 " nodes: each routed row crosses to at most min(top_k, topk_group, nodes) nodes "
                 "(the bound, not the mean)");
  }
  // Whether the file measured the EP group's and the data-parallel group's sizes (any phase).
  bool ep_sync = false, dp_sync = false;
  sync_loss_s(cluster.network, plan.ep, 1.0, &ep_sync);
  sync_loss_s(cluster.network, dense_dp, 1.0, &dp_sync);
  ep_sync = ep_sync && plan.ep > 1;
  dp_sync = dp_sync && dense_dp > 1;
  if (ep_sync) {
    notes.insert("each expert exchange after a phase of compute waits the synchronisation loss "
                 "measured for that phase (network.sync_loss): the EP group's ranks do not "
                 "finish it together");
  }
  if (dp_sync) {
    notes.insert("ZeRO's last reduce-scatter waits the synchronisation loss measured for the "
                 "phase the step ends with (the compute since the stage's last exchange)");
  }
  if (cores_time_shared) {
    notes.insert(std::to_string(ranks_per_node) + " ranks x " +
                 std::to_string(recipe.run.cpu_threads) + " thread(s) on a node's " +
                 std::to_string(cluster.device.node_cores) +
                 " cores: they time-share the cores. The pipeline shares them among the ranks "
                 "computing at each moment (a rank idle in the bubble lends its core, an EP "
                 "rank done with its routed rows lends it to the busiest; ideal sharing, which "
                 "prices a bubble low); at every exchange a rank waits for peers "
                 "the OS has not scheduled, which this plan prices " +
                 (ep_sync || dp_sync ? "at the expert exchanges and ZeRO's reduce-scatter where "
                                       "measured (the synchronisation loss), not at the "
                                       "pipeline's transfers"
                                     : "nowhere (expect a slower step than planned)"));
  }
  if (plan.precision != "fp32") {
    // The expert exchanges' formats are tessera's (trainer/layers/moe_block.h, wire_bytes).
    notes.insert("precision " + plan.precision +
                 ": expert exchanges priced in the formats tessera " +
                 (plan.precision == "fp8"
                      ? "sends (fp8 dispatch and output gradients, bf16 combine and input "
                        "gradients"
                      : "sends (bf16 dispatch, combine and output gradients, fp32 input "
                        "gradients") +
                 "; node-aware dispatch's across-node partial sums and dy in fp32, where DeepEP "
                 "sends bf16); pipeline transfers in bf16 as DeepSeek-V3 sends them (tessera "
                 "sends fp32 today); the head, router and attention core in bf16 (tessera runs "
                 "those in fp32)");
  }
  plan.notes.assign(notes.begin(), notes.end());
  return plan;
}

std::string format_plan(const Plan& p) {
  std::string out;
  char line[512];
  std::snprintf(
      line, sizeof(line),
      "plan: %s on %s\nlayout: pp %d x dp %d (ep %d%s), %s, %d micro-batches%s, "
      "precision %s, %d ranks\n",
      p.recipe.c_str(), p.cluster.c_str(), p.pp, p.dp, p.ep,
      p.ep_nodes > 1 ? (" over " + std::to_string(p.ep_nodes) + " nodes, " +
                        (p.node_aware_dispatch ? "node-aware" : "flat") + " dispatch")
                           .c_str()
                     : "",
      p.schedule.c_str(), p.micro_batches,
      p.virtual_stages > 1 ? (", " + std::to_string(p.virtual_stages) + " virtual stages").c_str()
                           : "",
      p.precision.c_str(), p.world);
  out += line;
  std::snprintf(line, sizeof(line),
                "step %.4g s (pipeline %.4g s, bubble %.1f%%; ZeRO %.3g s; optimizer %.3g s; "
                "step tail %.3g s), exposed communication %.3g s\n",
                p.step_s, p.pipeline_s, 100 * p.bubble_fraction, p.zero_s, p.optimizer_s,
                p.step_tail_s, p.exposed_comm_s);
  out += line;
  std::snprintf(line, sizeof(line),
                "%.4g tokens/s, MFU %.1f%% (%.4g GFLOP per token trained, %s peak), "
                "%.4g GPU-hours and %.3g days per trillion tokens\n",
                p.tokens_per_s, 100 * p.mfu, p.training_flops_per_token / 1e9, p.precision.c_str(),
                p.gpu_hours_per_trillion_tokens, p.days_per_trillion_tokens);
  out += line;
  out += "memory: " + p.verdict + "\n";
  out +=
      "per micro-batch (s): stage chunk | forward backward-input backward-weight | "
      "all-to-all fwd bwd | layers\n";
  for (const ChunkCost& c : p.chunks) {
    std::snprintf(line, sizeof(line), "  %5d %5d | %7.3g %14.3g %15.3g | %10.3g %8.3g | %s\n",
                  c.stage, c.chunk, c.forward, c.backward_input, c.backward_weight, c.forward_comm,
                  c.backward_comm, c.layers.c_str());
    out += line;
  }
  out += trainer::format_memory_plan(p.memory);
  for (const std::string& n : p.notes) out += "note: " + n + "\n";
  return out;
}

std::string plan_json(const Plan& p) {
  nlohmann::json j;
  j["recipe"] = p.recipe;
  j["cluster"] = p.cluster;
  j["pp"] = p.pp;
  j["dp"] = p.dp;
  j["ep"] = p.ep;
  j["schedule"] = p.schedule;
  j["micro_batches"] = p.micro_batches;
  j["virtual_stages"] = p.virtual_stages;
  j["precision"] = p.precision;
  j["world"] = p.world;
  j["ep_nodes"] = p.ep_nodes;
  j["node_aware_dispatch"] = p.node_aware_dispatch;
  j["step_s"] = p.step_s;
  j["pipeline_s"] = p.pipeline_s;
  j["zero_s"] = p.zero_s;
  j["optimizer_s"] = p.optimizer_s;
  j["step_tail_s"] = p.step_tail_s;
  j["tokens_per_s"] = p.tokens_per_s;
  j["mfu"] = p.mfu;
  j["bubble_fraction"] = p.bubble_fraction;
  j["exposed_comm_s"] = p.exposed_comm_s;
  j["training_flops_per_token"] = p.training_flops_per_token;
  j["peak_memory_gib"] = p.peak_memory_gib;
  j["peak_memory_rank"] = p.peak_memory_rank;
  j["device_memory_gib"] = p.device_memory_gib;
  j["fits"] = p.fits;
  j["verdict"] = p.verdict;
  j["gpu_hours_per_trillion_tokens"] = p.gpu_hours_per_trillion_tokens;
  j["days_per_trillion_tokens"] = p.days_per_trillion_tokens;
  j["notes"] = p.notes;
  return j.dump();
}

}  // namespace tessera::cluster
