// tessera plan calibrate RECIPE... --out FILE: measures this machine into a cluster description
// (cluster/cluster_spec.h). The measurements are cluster/calibration.h's; this file parses the
// arguments, runs them in order with rank 0 printing progress, and writes the file.
//
// tessera plan: `plan calibrate ...` is this command; everything else is the planner's
// (run_plan_predict_command, the planner's own file).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cluster/calibration.h"
#include "cluster/cluster_spec.h"
#include "cluster/commands.h"
#include "kernels/cpu_backend.h"
#include "kernels/gemm.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "trainer/recipe.h"

namespace tessera::cluster {

namespace po = boost::program_options;
using trainer::Recipe;

namespace {

constexpr const char* kUsage =
    "Usage: mpirun -np N tessera plan calibrate RECIPE... --out FILE [--name NAME]\n"
    "           [--precisions fp32,bf16,fp8] [--set key.path=value]... [--quick]\n\n"
    "Measures this machine into a cluster description (cluster/cluster_spec.h's YAML, which\n"
    "`tessera plan RECIPE --cluster FILE` reads): GEMM throughput by shape through the CPU backend's\n"
    "linear ops (every distinct GEMM of the micro-batches each recipe's layouts can have on these\n"
    "ranks (--quick: its own): forward nt, input gradient nn, weight gradient tn, routed experts\n"
    "at the rows one expert gets from one rank; operands cycled through 64 MiB, as a training\n"
    "step streams them; large square shapes for the peaks), the causal attention core at each\n"
    "recipe's (seq_len, heads, head_dim) (operands cycled the same way), memory bandwidth (a\n"
    "STREAM triad), point-to-point latency and bandwidth, all-to-all, reduce-scatter and\n"
    "all-gather throughput between the ranks (groups of 2, 4, ... consecutive ranks), and what\n"
    "an exchange after 2, 8, 32 or 128 ms of compute waits for the group's slower ranks (where\n"
    "ranks x threads outnumber the cores, for the group of every rank only). All ranks measure\n"
    "at once, as they train (sharing the cores); every number is the slowest rank's (a\n"
    "synchronous step waits for it); GEMMs and attention are measured in two passes over their\n"
    "list, keeping each one's fastest (a slow period of the machine only slows; --quick: one\n"
    "pass). All ranks are one node (nodes: 1, gpus_per_node: N); the inter-node numbers repeat\n"
    "the intra-node ones.\n\n"
    "Needs >= 2 processes (mpirun): one cannot measure the network. run.device must be cpu; the\n"
    "recipes' run.cpu_threads (all equal) sets each rank's threads. GEMMs are measured at fp32, and\n"
    "at bf16 / fp8 (the CPU's emulation) when a recipe's precision.compute or --precisions names\n"
    "them; the peaks of all three are always measured. Takes a minute or two at\n"
    "recipes/bench-moe.yaml's sizes; rank 0 prints progress and writes FILE.\n\n"
    "Options";

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

std::string tflops(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4g", x);
  return buf;
}

std::string bytes_text(int64_t bytes) {
  if (bytes >= (int64_t{1} << 20) && bytes % (int64_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " B";
}

struct Settings {
  std::vector<std::string> recipe_paths;
  std::string out;
  std::string name;
  std::vector<std::string> precisions;
  std::vector<std::string> overrides;
  bool quick = false;
};

// The sizes of one run: --quick shrinks every one (for tests; the numbers are then noisy and
// partly cache-bound).
struct Sizes {
  TimingPolicy timing;
  std::vector<int64_t> squares;
  int64_t latency_bytes = 8;
  std::vector<int64_t> bandwidth_bytes;
  std::vector<int64_t> all_to_all_bytes;
  std::vector<int64_t> zero_bytes;  // reduce-scatter / all-gather buffers (the whole buffer)
  int64_t stream_min = 0, stream_max = 0;
  // Passes over the whole list of GEMMs and attention cores, keeping each one's fastest: a
  // slow period of the machine (a host's other tenants) only slows, and one lasting seconds
  // would otherwise price a run of neighbouring shapes (measured here: one calibration in four
  // priced the pipeline's micro-batch GEMMs 20% slow).
  int compute_passes = 2;
  // Synchronised phases (measure_sync_loss_s): their lengths (the longest about a step of the
  // benchmark model on 2 ranks: ZeRO's reduce-scatter follows the whole step's compute where
  // data parallelism is alone), and iterations enough for sync_sample_s of phases, at least
  // sync_min_iterations.
  std::vector<double> sync_phases_s = {0.002, 0.008, 0.032, 0.128};
  double sync_sample_s = 0.5;
  int sync_min_iterations = 12;
};

Sizes sizes_for(bool quick) {
  constexpr int64_t KiB = 1024, MiB = 1024 * 1024;
  Sizes s;
  if (quick) {
    s.timing = TimingPolicy::quick();
    s.squares = {128};
    s.bandwidth_bytes = {1 * MiB};
    s.all_to_all_bytes = {64 * KiB};
    s.zero_bytes = {64 * KiB};
    s.stream_min = s.stream_max = 8 * MiB;
    s.compute_passes = 1;
    s.sync_phases_s = {0.002};
    s.sync_sample_s = 0.02;
    s.sync_min_iterations = 3;
  } else {
    s.squares = {1024, 2048};
    s.bandwidth_bytes = {4 * MiB, 16 * MiB};
    s.all_to_all_bytes = {64 * KiB, 1 * MiB, 8 * MiB};
    s.zero_bytes = {1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB};
    s.stream_min = 64 * MiB;
    s.stream_max = 2048 * MiB;
  }
  return s;
}

// Runs the measurements and returns the description; every rank calls it (rank 0 prints).
ClusterSpec calibrate(const Settings& settings, const std::vector<Recipe>& recipes,
                      parallel::Comm& world, std::ostream& log, std::vector<std::string>& notes) {
  const bool root = world.rank() == 0;
  const int ranks = world.size();
  const Sizes sizes = sizes_for(settings.quick);
  const std::vector<std::string> precisions =
      calibration_precisions(recipes, settings.precisions);
  // --quick: the recipes' own micro-batches only; else those of every layout on these ranks.
  const int layout_ranks = settings.quick ? 0 : ranks;
  const CalibrationPlan plan = plan_calibration(recipes, precisions, sizes.squares, layout_ranks);
  kernels::CpuBackend backend;
  auto say = [&](const std::string& line) {
    if (root) log << line << std::endl;
  };

  ClusterSpec spec;
  spec.name = settings.name.empty() ? "calibrated-" + host_name() : settings.name;
  spec.nodes = 1;
  spec.gpus_per_node = ranks;
  DeviceSpec& device = spec.device;
  device.kind = "cpu";
  device.name = cpu_model_name() + " (" + std::to_string(online_cpus()) + " cores)";
  device.memory_gib = total_memory_gib() / ranks;
  device.node_cores = online_cpus();
  say("tessera plan calibrate: " + std::to_string(ranks) + " ranks on " + device.name + ", " +
      std::to_string(kernels::cpu_threads()) + " thread(s) per rank, " +
      backend.capabilities().name);

  // ---- 1. GEMMs (the fastest of sizes.compute_passes passes over the list).
  for (const GemmRequest& g : plan.gemms) {
    device.gemm.push_back({g.precision, g.layout, g.m, g.n, g.k, 0.0});
  }
  for (int pass = 0; pass < sizes.compute_passes; ++pass) {
    for (size_t i = 0; i < plan.gemms.size(); ++i) {
      const GemmRequest& g = plan.gemms[i];
      const double t = measure_gemm_tflops(backend, world, g, sizes.timing);
      device.gemm[i].tflops = std::max(device.gemm[i].tflops, t);
      say("gemm [" + std::to_string(i + 1) + "/" + std::to_string(plan.gemms.size()) + ", pass " +
          std::to_string(pass + 1) + "/" + std::to_string(sizes.compute_passes) + "] " +
          g.precision + " " + g.layout + " m=" + std::to_string(g.m) +
          " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) + ": " + tflops(t) +
          " TFLOP/s");
    }
  }
  for (const GemmPoint& p : device.gemm) {
    double& peak = p.precision == "fp32"   ? device.peak_tflops_fp32
                   : p.precision == "bf16" ? device.peak_tflops_bf16
                                           : device.peak_tflops_fp8;
    peak = std::max(peak, p.tflops);
  }
  say("peak TFLOP/s (best measured): fp32 " + tflops(device.peak_tflops_fp32) + ", bf16 " +
      tflops(device.peak_tflops_bf16) + ", fp8 " + tflops(device.peak_tflops_fp8));

  // ---- 2. Attention (passes as the GEMMs').
  for (const AttentionRequest& a : plan.attention) {
    device.attention.push_back({a.seq_len, a.qk_dim, 0.0, 0.0});
  }
  for (int pass = 0; pass < sizes.compute_passes; ++pass) {
    for (size_t i = 0; i < plan.attention.size(); ++i) {
      const AttentionRequest& a = plan.attention[i];
      const AttentionTflops t = measure_attention_tflops(backend, world, a, sizes.timing);
      AttentionPoint& best = device.attention[i];
      best.forward_tflops = std::max(best.forward_tflops, t.forward);
      best.backward_tflops = std::max(best.backward_tflops, t.backward);
      say("attention seq_len=" + std::to_string(a.seq_len) + " head_dim=" +
          std::to_string(a.qk_dim) + " (batch " + std::to_string(a.batch) + ", " +
          std::to_string(a.heads) + " heads, v_dim " + std::to_string(a.v_dim) + ", pass " +
          std::to_string(pass + 1) + "/" + std::to_string(sizes.compute_passes) +
          "): forward " + tflops(t.forward) + ", backward " + tflops(t.backward) + " TFLOP/s");
    }
  }

  // ---- 3. Memory bandwidth.
  const int64_t llc = last_level_cache_bytes();
  const int64_t max_stream = std::min<int64_t>(
      sizes.stream_max,
      static_cast<int64_t>(total_memory_gib() * (1 << 30) / (12.0 * ranks)));  // <= 1/4 of memory
  const int64_t array_bytes = stream_array_bytes(llc, ranks, sizes.stream_min, max_stream);
  device.memory_gbs = measure_memory_gbs(world, array_bytes, sizes.timing);
  say("memory: triad over 3 x " + fixed(array_bytes / 1048576.0, 0) + " MiB per rank (last-level " +
      "cache " + fixed(llc / 1048576.0, 0) + " MiB): " + fixed(device.memory_gbs, 2) +
      " GB/s per rank");

  // ---- 4. Network.
  NetworkSpec& net = spec.network;
  net.intra_node_latency_us = measure_ping_pong_s(world, sizes.latency_bytes, sizes.timing) * 1e6;
  say("point-to-point latency (" + std::to_string(sizes.latency_bytes) + " B, half round trip): " +
      fixed(net.intra_node_latency_us, 2) + " us");
  for (int64_t bytes : sizes.bandwidth_bytes) {
    const double gbs = bytes / measure_ping_pong_s(world, bytes, sizes.timing) / 1e9;
    net.intra_node_gbs = std::max(net.intra_node_gbs, gbs);
    say("point-to-point bandwidth (" + bytes_text(bytes) + "): " + fixed(gbs, 2) + " GB/s");
  }
  net.inter_node_gbs = net.intra_node_gbs;
  net.inter_node_latency_us = net.intra_node_latency_us;
  for (int g : all_to_all_group_sizes(ranks)) {
    const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, g);
    for (int64_t bytes : sizes.all_to_all_bytes) {
      const double gbs = measure_all_to_all_gbs(world, *group, g, bytes, sizes.timing);
      net.all_to_all.push_back({g, bytes, gbs});
      say("all-to-all " + std::to_string(g) + " ranks, " + bytes_text(bytes) + " per rank: " +
          fixed(gbs, 2) + " GB/s per rank");
    }
    for (ZeroCollective kind : {ZeroCollective::kReduceScatter, ZeroCollective::kAllGather}) {
      std::vector<CollectivePoint>& points =
          kind == ZeroCollective::kReduceScatter ? net.reduce_scatter : net.all_gather;
      for (int64_t bytes : sizes.zero_bytes) {
        const double gbs =
            measure_zero_collective_gbs(world, *group, g, kind, bytes, sizes.timing);
        points.push_back({g, bytes, gbs});
        say(std::string(zero_collective_name(kind)) + " " + std::to_string(g) + " ranks, " +
            bytes_text(bytes) + ": " + fixed(gbs, 2) + " GB/s");
      }
    }
  }

  // ---- 5. What synchronising phases costs beyond their work and exchange. Where the ranks
  // time-share the cores it depends on which ranks compute when: only the group of every rank
  // (dp = ep = ranks, no pipeline) runs as measured, each rank computing until the exchange
  // (measured here, 4 ranks on 2 cores: groups of 2 lost 3-8 ms per exchange, which priced
  // pp2 dp2 ep2 1f1b 47% slow: in a pipeline the ranks idle in turn).
  const bool time_shared =
      static_cast<int64_t>(ranks) * kernels::cpu_threads() > device.node_cores;
  const std::vector<int> all_groups = all_to_all_group_sizes(ranks);
  const std::vector<int> sync_groups =
      time_shared ? std::vector<int>{all_groups.back()} : all_groups;
  if (time_shared) {
    say("synchronisation: " + std::to_string(ranks) + " ranks x " +
        std::to_string(kernels::cpu_threads()) + " thread(s) time-share " +
        std::to_string(device.node_cores) + " cores: groups of " +
        std::to_string(all_groups.back()) + " only");
  }
  for (int g : sync_groups) {
    const std::unique_ptr<parallel::Comm> group = make_consecutive_groups(world, g);
    for (double phase_s : sizes.sync_phases_s) {
      const int iterations = std::max(
          sizes.sync_min_iterations, static_cast<int>(std::ceil(sizes.sync_sample_s / phase_s)));
      const double loss = measure_sync_loss_s(backend, world, *group, g, phase_s, iterations);
      net.sync_loss.push_back({g, phase_s, std::max(0.0, loss)});
      say("synchronisation " + std::to_string(g) + " ranks, phases of " +
          fixed(phase_s * 1e3, 0) + " ms (" + std::to_string(iterations) + "): " +
          fixed(loss * 1e3, 3) + " ms lost per exchange");
    }
  }

  // ---- The file's comment.
  std::string recipe_list;
  for (const Recipe& r : recipes) {
    std::string rows;
    for (int64_t b : layout_micro_batch_rows(r, layout_ranks)) {
      rows += (rows.empty() ? "" : ", ") + std::to_string(b);
    }
    recipe_list += (recipe_list.empty() ? "" : "; ") + r.source + " (micro-batches of " + rows +
                   " x " + std::to_string(r.train.seq_len) + " tokens)";
  }
  std::string precision_list;
  for (const std::string& p : precisions) precision_list += (precision_list.empty() ? "" : ", ") + p;
  std::string squares;
  for (int64_t n : sizes.squares) {
    squares += (squares.empty() ? "" : ", ") + std::to_string(n) + "^3";
  }
  notes = {
      "Measured by `tessera plan calibrate` on " + host_name() + ", " + utc_now() + ": " +
          std::to_string(ranks) + " ranks (mpirun), " + std::to_string(kernels::cpu_threads()) +
          " thread(s) per rank, " + backend.capabilities().name + ".",
      "Recipes: " + recipe_list + ".",
      "All ranks measured at once, as they train (sharing the machine's cores); every number is "
      "the slowest rank's, per rank (synchronous training waits for it at every exchange).",
      "Timing: a warm-up call, then the median of " + std::to_string(sizes.timing.samples) +
          " samples of >= " + fixed(sizes.timing.sample_s * 1e3, 0) + " ms; GEMMs and attention: "
          "the fastest of " + std::to_string(sizes.compute_passes) + " passes over their whole "
          "list (a slow period of the machine only slows)." +
          (settings.quick ? " --quick: short samples and small buffers (a test run, not for "
                            "planning)."
                          : ""),
      "gemm: TFLOP/s = 2 m n k / s through the CPU backend's linear ops (nt linear_forward, nn "
      "linear_backward_input, tn linear_backward_weight; the routed experts' grouped ops are these "
      "per expert on the CPU), every distinct trainer::gemm_shapes() of those micro-batches at " +
          precision_list + " (fp32-only maps at fp32), and " + squares + " at every precision; "
          "each call on the next of copies of its operands (64 MiB in all), cold as in training.",
      "peak_tflops: the best measured GEMM throughput of each precision (fp32: the measured SGEMM "
      "peak, not a datasheet figure; bf16 and fp8: the CPU's emulation, rounded inputs and fp32 "
      "products).",
      "attention: the backend's causal attention forward / backward (head_dim = qk width), FLOPs "
      "as trainer/flop_count.h counts them: forward 2 heads (qk + v) (T + 1) / 2 per token, "
      "backward 2x; each call on the next of copies of its operands (64 MiB in all), cold as "
      "in training.",
      "memory_gbs: STREAM triad a = b + s c over 3 arrays of " +
          fixed(array_bytes / 1048576.0, 0) + " MiB per rank (24 bytes per element), all ranks "
          "at once, per rank. memory_gib: MemTotal / ranks.",
      "network: one node of " + std::to_string(ranks) + " ranks. intra_node_*: ping-pong of "
      "ranks 2i <-> 2i+1, all pairs at once, through the trainer's MPI communicator (MpiComm): "
      "latency = half a round trip of " + std::to_string(sizes.latency_bytes) +
          " bytes, bandwidth = bytes / half round trip, the best of the large sizes.",
      "inter_node_* = intra_node_*: one machine has no second node to measure.",
      "all_to_all: all_to_all_v in groups of consecutive ranks (all groups at once), each rank's "
      "bytes_per_rank split evenly over its group, its own slice included; gbs = bytes_per_rank / "
      "seconds.",
      "reduce_scatter (fp32 sum) and all_gather: ZeRO-1's collectives in the same groups; bytes is "
      "the whole buffer (every rank's slices), gbs = bytes / seconds.",
      std::string("sync_loss: ") +
          (time_shared ? "the ranks time-share the cores, where what an exchange waits for "
                         "depends on which ranks compute when: only the largest group, " +
                             std::to_string(all_groups.back()) + " ranks; "
                       : "in the same groups; ") +
          "every rank runs phase_s of fp32 256^3 GEMMs (as many as take that with all ranks "
          "computing) then a 64-byte-per-peer all_to_all_v it waits for; loss_s = the mean of "
          "phase + exchange - the slowest rank's median phase - the slowest rank's median "
          "exchange back to back (negative noise written as 0).",
  };
  return spec;
}

}  // namespace

int run_plan_calibrate_command(const std::vector<std::string>& args) {
  po::options_description visible(kUsage);
  visible.add_options()
      ("help,h", "show this help")
      ("out", po::value<std::string>(), "the cluster description to write (YAML); required")
      ("name", po::value<std::string>(),
       "the cluster's name in the file (default: calibrated-<hostname>)")
      ("precisions", po::value<std::string>(),
       "comma-separated GEMM precisions to measure the recipes' shapes at, besides fp32 and the "
       "recipes' precision.compute, e.g. fp32,bf16,fp8")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a key of every recipe, e.g. --set parallel.dp=2 (repeatable)")
      ("quick",
       "short samples, small buffers and few sizes (seconds, for tests): noisy numbers, not for "
       "planning");
  po::options_description all;
  all.add(visible).add_options()("recipe", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("recipe", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera plan calibrate: " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  Settings settings;
  if (vm.count("recipe")) settings.recipe_paths = vm["recipe"].as<std::vector<std::string>>();
  if (vm.count("out")) settings.out = vm["out"].as<std::string>();
  if (vm.count("name")) settings.name = vm["name"].as<std::string>();
  if (vm.count("precisions")) settings.precisions = split_commas(vm["precisions"].as<std::string>());
  if (vm.count("set")) settings.overrides = vm["set"].as<std::vector<std::string>>();
  settings.quick = vm.count("quick") > 0;

  std::unique_ptr<parallel::MpiComm> world = parallel::MpiComm::world();
  const bool root = world->rank() == 0;
  // Every check below sees the same inputs on every rank, so every rank returns the same status
  // and only rank 0 prints.
  auto usage_error = [&](const std::string& message) {
    if (root) std::cerr << "tessera plan calibrate: " << message << "\n";
    return 2;
  };
  if (settings.recipe_paths.empty()) return usage_error("missing RECIPE (one or more)");
  if (settings.out.empty()) return usage_error("missing --out FILE");
  try {
    for (const std::string& p : settings.precisions) kernels::parse_precision(p);
  } catch (const std::invalid_argument& e) {
    return usage_error(std::string("--precisions: ") + e.what());
  }
  std::vector<Recipe> recipes;
  for (const std::string& path : settings.recipe_paths) {
    try {
      recipes.push_back(trainer::load_recipe(path, settings.overrides));
    } catch (const trainer::RecipeError& e) {
      return usage_error(e.what());
    }
  }
  for (const Recipe& r : recipes) {
    if (r.run.device != "cpu") {
      return usage_error(r.source + ": run.device: calibrate measures the CPU backend only, got " +
                         r.run.device);
    }
    if (r.run.cpu_threads != recipes.front().run.cpu_threads) {
      return usage_error("run.cpu_threads differs between " + recipes.front().source + " (" +
                         std::to_string(recipes.front().run.cpu_threads) + ") and " + r.source +
                         " (" + std::to_string(r.run.cpu_threads) +
                         "): one file describes one setting; calibrate them separately");
    }
  }
  if (world->size() < 2) {
    return usage_error(
        "needs >= 2 ranks to measure the network (point-to-point, all-to-all), and this is a "
        "single process: run it under mpirun with >= 2 ranks, e.g. `mpirun -np 2 tessera plan "
        "calibrate " + settings.recipe_paths.front() + " --out " + settings.out + "`");
  }
  // Rank 0 writes; find out now, not after the measurements, whether it can.
  int32_t writable = 1;
  if (root) {
    const std::filesystem::path out(settings.out);
    const std::string dir = out.has_parent_path() ? out.parent_path().string() : ".";
    writable = std::filesystem::is_directory(dir) && access(dir.c_str(), W_OK) == 0 &&
               (!std::filesystem::exists(out) || access(settings.out.c_str(), W_OK) == 0);
  }
  world->broadcast(std::span<int32_t>(&writable, 1), 0).wait();
  if (!writable) return usage_error("--out " + settings.out + ": cannot open for writing");

  try {
    const auto start = std::chrono::steady_clock::now();
    kernels::set_cpu_threads(static_cast<int>(recipes.front().run.cpu_threads));
    std::vector<std::string> notes;
    const ClusterSpec spec = calibrate(settings, recipes, *world, std::cout, notes);
    if (root) {
      std::ofstream out(settings.out, std::ios::trunc);
      out << cluster_spec_to_yaml(spec, notes);
      out.close();
      if (!out) throw std::runtime_error("cannot write " + settings.out);
      std::cout << "tessera plan calibrate: wrote " << settings.out << " ("
                << fixed(std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                             .count(), 1)
                << " s)" << std::endl;
    }
    world->barrier().wait();
  } catch (const std::exception& e) {
    // One rank's failure must end every rank: its peers would wait in a collective forever.
    parallel::abort_all(std::string("tessera plan calibrate: error: ") + e.what(), 1);
  }
  return 0;
}

int run_plan_command(const std::vector<std::string>& args) {
  if (!args.empty() && args.front() == "calibrate") {
    return run_plan_calibrate_command(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return run_plan_predict_command(args);
}

}  // namespace tessera::cluster
