#include "cluster/calibration.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "kernels/gemm.h"
#include "trainer/flop_count.h"

namespace tessera::cluster {

namespace fs = std::filesystem;
using kernels::Backend;
using kernels::Precision;
using parallel::Comm;
using trainer::Recipe;

namespace {

using Clock = std::chrono::steady_clock;

// What a compute measurement's operand copies add up to (cold_copies).
constexpr int64_t kColdWorkingSetBytes = int64_t{64} << 20;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double all_reduce_one(Comm& world, double value, parallel::ReduceOp op) {
  world.all_reduce(std::span<double>(&value, 1), {op}).wait();
  return value;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Seconds per call of body() on this rank (see "Timing" in the header). Every rank of `world`
// calls it; body() may be a no-op on ranks that sit out, and may itself be a collective over a
// sub-communicator (every member then makes the same number of calls).
double seconds_per_call(Comm& world, const std::function<void()>& body, const TimingPolicy& t) {
  body();  // warm-up
  world.barrier().wait();
  const Clock::time_point probe_start = Clock::now();
  body();
  const double probe = all_reduce_one(world, seconds_since(probe_start), parallel::ReduceOp::kMax);
  const int64_t calls = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(t.sample_s / std::max(probe, 1e-9))), 1, int64_t{1} << 24);
  std::vector<double> samples;
  for (int s = 0; s < std::max(1, t.samples); ++s) {
    world.barrier().wait();
    const Clock::time_point start = Clock::now();
    for (int64_t c = 0; c < calls; ++c) body();
    samples.push_back(seconds_since(start) / static_cast<double>(calls));
  }
  return median(std::move(samples));
}

// Uniform in [-1, 1): no denormals, no overflow over many accumulating calls.
kernels::Tensor random_tensor(Backend& backend, int64_t numel, uint32_t seed) {
  kernels::Tensor t = backend.alloc({std::max<int64_t>(numel, 1)}, kernels::DType::kF32);
  std::vector<float> host(static_cast<size_t>(std::max<int64_t>(numel, 1)));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& x : host) x = uniform(rng);
  backend.copy_from_host(t.data<float>(), host.data(), host.size() * sizeof(float));
  return t;
}

// Copies of an operand set of `set_bytes` that make kColdWorkingSetBytes together (1 to 256):
// calls cycling through them read their operands from memory, as in a training step (which
// streams hundreds of MiB between two uses of a weight or of a layer's saved activations), not
// from a cache the previous call warmed: measured in place, a small GEMM ran ~15-20% faster than
// in training, the attention core 5-7% faster forward and 10-13% backward than on cold copies.
int64_t cold_copies(int64_t set_bytes) {
  const int64_t bytes = std::max<int64_t>(set_bytes, 1);
  return std::clamp<int64_t>((kColdWorkingSetBytes + bytes - 1) / bytes, 1, 256);
}

// `copies` tensors of `numel` floats: `first`, then copies of it (cheaper than drawing each).
std::vector<kernels::Tensor> with_copies(Backend& backend, kernels::Tensor first, int64_t numel,
                                         int64_t copies) {
  std::vector<kernels::Tensor> all{std::move(first)};
  for (int64_t i = 1; i < copies; ++i) {
    all.push_back(backend.alloc({std::max<int64_t>(numel, 1)}, kernels::DType::kF32));
    backend.ops<float>().copy(all.back().data<float>(), all.front().data<float>(), numel);
  }
  return all;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A sysfs cache size: "48K", "2048K", "260M".
int64_t parse_cache_size(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.empty()) return 0;
  int64_t scale = 1;
  const char unit = text.back();
  if (unit == 'K') scale = int64_t{1} << 10;
  if (unit == 'M') scale = int64_t{1} << 20;
  if (unit == 'G') scale = int64_t{1} << 30;
  if (scale != 1) text.pop_back();
  try {
    return std::stoll(text) * scale;
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

double slowest_over_ranks(Comm& world, double seconds, bool takes_part) {
  double slowest = takes_part ? seconds : 0.0;
  world.all_reduce(std::span<double>(&slowest, 1), {parallel::ReduceOp::kMax}).wait();
  return slowest;
}

// ---- What to measure.

double AttentionRequest::forward_flops() const {
  const trainer::AttentionCore core{heads, qk_dim, v_dim};
  return static_cast<double>(batch * seq_len) * core.forward_flops_per_token(seq_len);
}

int64_t micro_batch_rows(const Recipe& recipe) {
  return recipe.train.global_batch /
         std::max<int64_t>(1, recipe.parallel.dp * recipe.parallel.micro_batches);
}

int64_t micro_batch_tokens(const Recipe& recipe) {
  return micro_batch_rows(recipe) * recipe.train.seq_len;
}

std::vector<std::string> calibration_precisions(const std::vector<Recipe>& recipes,
                                                const std::vector<std::string>& extra) {
  std::vector<bool> wanted(3, false);
  wanted[0] = true;
  auto want = [&](const std::string& name) {
    wanted[static_cast<size_t>(kernels::parse_precision(name))] = true;
  };
  for (const Recipe& r : recipes) want(r.precision.compute);
  for (const std::string& p : extra) want(p);
  std::vector<std::string> out;
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kFP8}) {
    if (wanted[static_cast<size_t>(p)]) out.push_back(kernels::precision_name(p));
  }
  return out;
}

std::vector<int64_t> layout_micro_batch_rows(const Recipe& recipe, int ranks) {
  std::vector<int64_t> rows = {micro_batch_rows(recipe)};
  const int64_t batch = recipe.train.global_batch;
  for (int64_t k = 1; k <= 4 * int64_t{ranks} && k <= batch; k *= 2) {
    if (batch % k == 0 && std::find(rows.begin(), rows.end(), batch / k) == rows.end()) {
      rows.push_back(batch / k);
    }
  }
  std::sort(rows.rbegin(), rows.rend());
  return rows;
}

CalibrationPlan plan_calibration(const std::vector<Recipe>& recipes,
                                 const std::vector<std::string>& precisions,
                                 const std::vector<int64_t>& square_sizes, int layout_ranks,
                                 int64_t attention_bytes) {
  CalibrationPlan plan;
  plan.precisions = precisions;
  auto add_gemm = [&](const GemmRequest& g) {
    if (std::find(plan.gemms.begin(), plan.gemms.end(), g) == plan.gemms.end()) {
      plan.gemms.push_back(g);
    }
  };
  for (const std::string& precision : precisions) {
    for (const Recipe& r : recipes) {
      for (int64_t micro_batch : layout_micro_batch_rows(r, layout_ranks)) {
        for (const trainer::GemmShape& s :
             trainer::gemm_shapes(r.model, micro_batch * r.train.seq_len)) {
          if (precision != "fp32" && !s.block_precision) continue;  // runs at fp32 in training
          add_gemm({precision, s.layout, s.m, s.n, s.k});
        }
      }
    }
  }
  for (const char* precision : {"fp32", "bf16", "fp8"}) {
    for (int64_t n : square_sizes) add_gemm({precision, "nt", n, n, n});
  }

  for (const Recipe& r : recipes) {
    const trainer::ModelCompute compute = trainer::describe_compute(r.model);
    std::vector<trainer::AttentionCore> cores;
    for (const trainer::ComputeUnit& u : compute.layers) cores.push_back(u.attention);
    for (const trainer::ComputeUnit& u : compute.mtp) cores.push_back(u.attention);
    for (const trainer::AttentionCore& core : cores) {
      if (core.heads == 0) continue;
      AttentionRequest a{micro_batch_rows(r), r.train.seq_len, core.heads, core.qk_dim,
                         core.v_dim};
      // What measuring allocates per (batch, head): q, k, v, out and their gradients, and the
      // saved logsumexp and scratch rows (kernels::attention_saved_numel / _scratch_numel).
      const int64_t per_head =
          (8 * a.qk_dim + 2) * a.seq_len * static_cast<int64_t>(sizeof(float));
      while (a.batch > 1 && a.batch * a.heads * per_head > attention_bytes) a.batch /= 2;
      while (a.heads > 1 && a.batch * a.heads * per_head > attention_bytes) a.heads /= 2;
      const bool seen = std::any_of(
          plan.attention.begin(), plan.attention.end(), [&](const AttentionRequest& b) {
            return b.seq_len == a.seq_len && b.qk_dim == a.qk_dim;
          });
      if (!seen) plan.attention.push_back(a);
    }
  }
  return plan;
}

std::vector<int> all_to_all_group_sizes(int world_size) {
  std::vector<int> sizes;
  for (int g = 2; g <= world_size; g *= 2) sizes.push_back(g);
  return sizes;
}

int64_t stream_array_bytes(int64_t llc_bytes, int ranks, int64_t min_bytes, int64_t max_bytes) {
  const int64_t all = 4 * llc_bytes;  // over 3 arrays x ranks
  int64_t bytes = (all + 3 * ranks - 1) / (3 * std::max(1, ranks));
  bytes = std::clamp(bytes, min_bytes, std::max(min_bytes, max_bytes));
  return bytes / 64 * 64;
}

// ---- The machine.

std::string cpu_model_name() {
  std::istringstream in(read_file("/proc/cpuinfo"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(colon + 1);
    name.erase(0, name.find_first_not_of(" \t"));
    if (!name.empty()) return name;
  }
  return "unknown CPU";
}

int online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

double total_memory_gib() {
  std::istringstream in(read_file("/proc/meminfo"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemTotal:", 0) != 0) continue;
    std::istringstream fields(line.substr(9));
    double kib = 0;
    fields >> kib;
    return kib / (1024.0 * 1024.0);
  }
  return 0.0;
}

int64_t last_level_cache_bytes() {
  int64_t largest = 0;
  const fs::path dir = "/sys/devices/system/cpu/cpu0/cache";
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind("index", 0) != 0) continue;
    largest = std::max(largest, parse_cache_size(read_file((e.path() / "size").string())));
  }
  return largest;
}

// ---- Measurements.

double measure_gemm_tflops(Backend& backend, Comm& world, const GemmRequest& g,
                           const TimingPolicy& timing) {
  kernels::BackendOps<float>& ops = backend.ops<float>();
  const Precision precision = kernels::parse_precision(g.precision);
  const kernels::LinearOptions options{.accumulate = false, .precision = precision};
  // Operands as the op names them: (rows N, in I, out O); A and B the two inputs, C the output.
  int64_t N = 0, I = 0, O = 0;
  if (g.layout == "nt") {
    N = g.m, O = g.n, I = g.k;
  } else if (g.layout == "nn") {
    N = g.m, I = g.n, O = g.k;
  } else if (g.layout == "tn") {
    O = g.m, I = g.n, N = g.k;
  } else {
    throw std::invalid_argument("measure_gemm_tflops: layout must be nt, nn or tn, got '" +
                                g.layout + "'");
  }
  // Operand sets (a, b, c) of each layout; the calls cycle through cold copies of them.
  const int64_t a_numel = g.layout == "tn" ? N * O : N * (g.layout == "nt" ? I : O);
  const int64_t b_numel = g.layout == "tn" ? N * I : O * I;
  const int64_t c_numel = g.layout == "tn" ? O * I : N * (g.layout == "nt" ? O : I);
  const int64_t copies = cold_copies(4 * (a_numel + b_numel + c_numel));
  const uint32_t seed = 17u + static_cast<uint32_t>(world.rank());
  std::vector<kernels::Tensor> a =
      with_copies(backend, random_tensor(backend, a_numel, seed), a_numel, copies);
  std::vector<kernels::Tensor> b =
      with_copies(backend, random_tensor(backend, b_numel, seed + 1), b_numel, copies);
  std::vector<kernels::Tensor> c =
      with_copies(backend, random_tensor(backend, c_numel, seed + 2), c_numel, copies);
  int64_t next = 0;
  auto body = [&] {
    const int64_t i = next;
    next = (next + 1) % copies;
    float* A = a[i].data<float>();
    float* B = b[i].data<float>();
    float* C = c[i].data<float>();
    if (g.layout == "nt") {  // y (N, O) = x (N, I) W^T, W (O, I)
      ops.linear_forward(C, O, A, I, B, N, I, O, options);
    } else if (g.layout == "nn") {  // dx (N, I) = dy (N, O) W
      ops.linear_backward_input(C, I, A, O, B, N, I, O, options);
    } else {  // dW (O, I) = dy (N, O)^T x (N, I)
      ops.linear_backward_weight(C, A, O, B, I, N, I, O, precision);
    }
  };
  const double s = slowest_over_ranks(
      world, seconds_per_call(world, [&] { body(); backend.synchronize(); }, timing), true);
  return g.flops() / s / 1e12;
}

AttentionTflops measure_attention_tflops(Backend& backend, Comm& world,
                                         const AttentionRequest& a, const TimingPolicy& timing) {
  kernels::BackendOps<float>& ops = backend.ops<float>();
  const kernels::AttentionShape shape{a.batch, a.seq_len, a.heads, a.qk_dim};
  const int64_t ld = a.heads * a.qk_dim;
  const int64_t numel = shape.tokens() * ld;
  const int64_t saved_numel =
      std::max<int64_t>(1, kernels::attention_saved_numel(backend.device(), shape));
  // Operand sets cycled through cold copies, as for GEMMs: in training the backward reads a
  // layer's inputs, output and saved statistics after the rest of the step has run. The scratch
  // is the op's own workspace (reused), so one.
  const int64_t copies = cold_copies(4 * (8 * numel + saved_numel));
  const uint32_t seed = 101u + static_cast<uint32_t>(world.rank());
  auto operand = [&](uint32_t offset, int64_t n) {
    return with_copies(backend, random_tensor(backend, n, seed + offset), n, copies);
  };
  std::vector<kernels::Tensor> q = operand(0, numel), k = operand(1, numel),
                               v = operand(2, numel), dout = operand(3, numel),
                               out = operand(4, numel), dq = operand(5, numel),
                               dk = operand(6, numel), dv = operand(7, numel),
                               saved = operand(8, saved_numel);
  kernels::Tensor scratch = backend.alloc(
      {std::max<int64_t>(1, kernels::attention_scratch_numel(backend.device(), shape))},
      kernels::DType::kF32);
  int64_t next = 0;
  auto forward = [&] {
    const size_t i = static_cast<size_t>(next);
    next = (next + 1) % copies;
    ops.attention_forward(out[i].data<float>(), ld, saved[i].data<float>(), q[i].data<float>(),
                          k[i].data<float>(), v[i].data<float>(), ld, shape);
    backend.synchronize();
  };
  auto backward = [&] {
    const size_t i = static_cast<size_t>(next);
    next = (next + 1) % copies;
    ops.attention_backward(dq[i].data<float>(), dk[i].data<float>(), dv[i].data<float>(), ld,
                           scratch.data<float>(), dout[i].data<float>(), out[i].data<float>(),
                           ld, saved[i].data<float>(), q[i].data<float>(), k[i].data<float>(),
                           v[i].data<float>(), ld, shape);
    backend.synchronize();
  };
  const double forward_s =
      slowest_over_ranks(world, seconds_per_call(world, forward, timing), true);
  const double backward_s =
      slowest_over_ranks(world, seconds_per_call(world, backward, timing), true);
  return {a.forward_flops() / forward_s / 1e12, a.backward_flops() / backward_s / 1e12};
}

double measure_memory_gbs(Comm& world, int64_t array_bytes, const TimingPolicy& timing) {
  const int64_t n = std::max<int64_t>(1, array_bytes / static_cast<int64_t>(sizeof(double)));
  // Not std::vector: its value-initialisation would touch every page from one thread.
  std::unique_ptr<double[]> a(new double[static_cast<size_t>(n)]);
  std::unique_ptr<double[]> b(new double[static_cast<size_t>(n)]);
  std::unique_ptr<double[]> c(new double[static_cast<size_t>(n)]);
  double* pa = a.get();
  double* pb = b.get();
  double* pc = c.get();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {  // first touch by the threads that use the pages
    pa[i] = 0.0;
    pb[i] = 1.0;
    pc[i] = 2.0;
  }
  const double scalar = 3.0;
  auto triad = [&] {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + scalar * pc[i];
  };
  const double s = slowest_over_ranks(world, seconds_per_call(world, triad, timing), true);
  volatile double sink = pa[n / 2];  // keep the loop
  (void)sink;
  return 3.0 * sizeof(double) * static_cast<double>(n) / s / 1e9;
}

double measure_ping_pong_s(Comm& world, int64_t bytes, const TimingPolicy& timing) {
  if (world.size() < 2) throw std::invalid_argument("measure_ping_pong_s: needs >= 2 ranks");
  if (bytes <= 0 || bytes % 4 != 0) {
    throw std::invalid_argument("measure_ping_pong_s: bytes must be a positive multiple of 4, "
                                "got " + std::to_string(bytes));
  }
  const int rank = world.rank();
  const int peer = rank % 2 == 0 ? rank + 1 : rank - 1;
  const bool takes_part = peer < world.size();
  std::vector<float> buffer(static_cast<size_t>(bytes / 4), 1.0f);
  auto round_trip = [&] {
    if (!takes_part) return;
    if (rank % 2 == 0) {
      world.send<float>(buffer, peer).wait();
      world.recv<float>(std::span<float>(buffer), peer).wait();
    } else {
      world.recv<float>(std::span<float>(buffer), peer).wait();
      world.send<float>(buffer, peer).wait();
    }
  };
  return slowest_over_ranks(world, seconds_per_call(world, round_trip, timing), takes_part) / 2.0;
}

std::unique_ptr<Comm> make_consecutive_groups(Comm& world, int group_size) {
  if (group_size < 1) {
    throw std::invalid_argument("make_consecutive_groups: group_size must be >= 1, got " +
                                std::to_string(group_size));
  }
  const int first = world.rank() / group_size * group_size;
  std::vector<int> ranks;
  for (int r = first; r < std::min(world.size(), first + group_size); ++r) ranks.push_back(r);
  return world.split(ranks, "calibrate-a2a-" + std::to_string(group_size));
}

double measure_all_to_all_gbs(Comm& world, Comm& group, int group_size, int64_t bytes_per_rank,
                              const TimingPolicy& timing) {
  if (group_size < 2 || bytes_per_rank <= 0 || bytes_per_rank % (4 * group_size) != 0) {
    throw std::invalid_argument(
        "measure_all_to_all_gbs: needs group_size >= 2 and bytes_per_rank a positive multiple of "
        "4 x group_size, got " + std::to_string(group_size) + " and " +
        std::to_string(bytes_per_rank));
  }
  const bool takes_part = group.size() == group_size;
  const int64_t per_peer = bytes_per_rank / 4 / group_size;
  std::vector<float> in(static_cast<size_t>(bytes_per_rank / 4), 1.0f);
  std::vector<float> out(in.size(), 0.0f);
  parallel::AllToAllVOptions options;
  options.send_counts.assign(static_cast<size_t>(group.size()), per_peer);
  options.recv_counts = options.send_counts;
  auto exchange = [&] {
    if (!takes_part) return;
    group.all_to_all_v<float>(in, std::span<float>(out), options).wait();
  };
  const double s = slowest_over_ranks(world, seconds_per_call(world, exchange, timing), takes_part);
  return static_cast<double>(bytes_per_rank) / s / 1e9;
}

double measure_sync_loss_s(Backend& backend, Comm& world, Comm& group, int group_size,
                           double phase_s, int iterations) {
  if (group_size < 2 || !(phase_s > 0) || iterations < 1) {
    throw std::invalid_argument("measure_sync_loss_s: needs group_size >= 2, phase_s > 0 and "
                                "iterations >= 1, got " + std::to_string(group_size) + ", " +
                                std::to_string(phase_s) + ", " + std::to_string(iterations));
  }
  const bool takes_part = group.size() == group_size;
  kernels::BackendOps<float>& ops = backend.ops<float>();
  // The phase's work: a cache-resident GEMM (what is measured is the ranks' pace, not memory).
  constexpr int64_t n = 256;
  const uint32_t seed = 211u + static_cast<uint32_t>(world.rank());
  const kernels::Tensor a = random_tensor(backend, n * n, seed);
  const kernels::Tensor b = random_tensor(backend, n * n, seed + 1);
  kernels::Tensor c = random_tensor(backend, n * n, seed + 2);
  const kernels::LinearOptions options{.accumulate = false, .precision = Precision::kF32};
  auto gemm = [&] {
    ops.linear_forward(c.data<float>(), n, a.data<float>(), n, b.data<float>(), n, n, n, options);
    backend.synchronize();
  };
  // 16 floats to and from every peer: the exchange is all latency.
  constexpr int64_t kPerPeer = 16;
  std::vector<float> in(static_cast<size_t>(kPerPeer * group.size()), 1.0f);
  std::vector<float> out(in.size(), 0.0f);
  parallel::AllToAllVOptions exchange_options;
  exchange_options.send_counts.assign(static_cast<size_t>(group.size()), kPerPeer);
  exchange_options.recv_counts = exchange_options.send_counts;
  auto exchange = [&] {
    if (takes_part) group.all_to_all_v<float>(in, std::span<float>(out), exchange_options).wait();
  };
  // GEMMs per phase, from the slowest rank's pace with every rank computing.
  const double per_gemm = slowest_over_ranks(
      world, seconds_per_call(world, gemm, TimingPolicy::quick()), true);
  const int64_t calls = std::max<int64_t>(1, std::llround(phase_s / std::max(per_gemm, 1e-9)));
  // E: the exchanges back to back.
  std::vector<double> alone(static_cast<size_t>(iterations));
  exchange();
  world.barrier().wait();
  for (double& e : alone) {
    const Clock::time_point start = Clock::now();
    exchange();
    e = seconds_since(start);
  }
  // Phases, each waiting for its exchange; one untimed first.
  std::vector<double> phase(static_cast<size_t>(iterations));
  double total = 0;
  for (int it = -1; it < iterations; ++it) {
    if (it == 0) world.barrier().wait();
    const Clock::time_point start = Clock::now();
    for (int64_t i = 0; i < calls; ++i) gemm();
    const double computed = seconds_since(start);
    exchange();
    if (it >= 0) {
      phase[static_cast<size_t>(it)] = computed;
      total += seconds_since(start);
    }
  }
  const double mean = slowest_over_ranks(world, total / iterations, takes_part);
  const double compute = slowest_over_ranks(world, median(phase), takes_part);
  const double exchanges = slowest_over_ranks(world, median(alone), takes_part);
  return mean - compute - exchanges;
}

const char* zero_collective_name(ZeroCollective kind) {
  return kind == ZeroCollective::kReduceScatter ? "reduce_scatter" : "all_gather";
}

double measure_zero_collective_gbs(Comm& world, Comm& group, int group_size, ZeroCollective kind,
                                   int64_t bytes, const TimingPolicy& timing) {
  if (group_size < 2 || bytes <= 0 || bytes % (4 * group_size) != 0) {
    throw std::invalid_argument(
        std::string("measure_zero_collective_gbs(") + zero_collective_name(kind) +
        "): needs group_size >= 2 and bytes a positive multiple of 4 x group_size, got " +
        std::to_string(group_size) + " and " + std::to_string(bytes));
  }
  const bool takes_part = group.size() == group_size;
  std::vector<float> whole(static_cast<size_t>(bytes / 4), 1.0f);
  std::vector<float> slice(whole.size() / static_cast<size_t>(group_size), 1.0f);
  auto collective = [&] {
    if (!takes_part) return;
    if (kind == ZeroCollective::kReduceScatter) {
      group.reduce_scatter<float>(whole, std::span<float>(slice)).wait();
    } else {
      group.all_gather<float>(slice, std::span<float>(whole)).wait();
    }
  };
  const double s =
      slowest_over_ranks(world, seconds_per_call(world, collective, timing), takes_part);
  return static_cast<double>(bytes) / s / 1e9;
}

}  // namespace tessera::cluster
