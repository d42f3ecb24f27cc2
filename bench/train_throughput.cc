// Single-process training throughput on a recipe's model (default recipes/bench-moe.yaml):
// full training steps (forward, backward, grad norm, AdamW, bias update) on random tokens.
// Prints tokens/s, achieved model GFLOP/s, and that as a fraction of the SGEMM peak measured in
// the same process with the same backend and threads. Last line: one JSON object.
//
// --profile 1: the model runs on a kernels::ProfilingBackend around the backend, and a table of
// the timed steps' time per backend op kind (share of the step) is printed before the summary.
//
// --bf16-gemm native,emulated (cpu): the whole measurement once per bf16 GEMM listed
// (kernels/bf16_gemm_choice.h), side by side in one process; default: the one the CPU and
// TESSERA_BF16_GEMM pick. The gemm line and the JSON say which ran.
//
// Usage: train_throughput [--recipe PATH] [--steps N] [--warmup N] [--threads N] [--profile 0|1]
//                         [--bf16-gemm LIST] [--set k=v]...
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/best_rate.h"
#include "kernels/bf16_gemm_choice.h"
#include "kernels/cpu_backend.h"
#include "kernels/factory/make_backend.h"
#include "kernels/gemm.h"
#include "kernels/host_memory.h"
#include "kernels/profiling_backend.h"
#include "trainer/lr_schedule.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/param_count.h"
#include "trainer/recipe.h"
#include "trainer/rng.h"

using namespace tessera;
using namespace tessera::trainer;
using Clock = std::chrono::steady_clock;

namespace {

// Matmul FLOPs of one token's forward pass (the model's, not the kernels': MLA's padded v is not
// counted); a training step is 3x (forward, input grads, weight grads). Every activated weight
// multiplies once per token (norm weights, a few per layer, are counted too: negligible), the
// head once more per MTP depth, and attention's q.k and p.v run over the causal prefix.
double forward_flops_per_token(const Recipe& recipe) {
  const ModelConfig& c = recipe.model;
  const ParameterCounts counts = count_parameters(recipe);
  const double T = static_cast<double>(recipe.train.seq_len);
  const double qk = c.attention == "mla" ? c.n_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim)
                                         : c.dim;
  const double v = c.attention == "mla" ? c.n_heads * c.v_head_dim : c.dim;
  double f = 2.0 * (counts.activated + counts.mtp_activated);
  f += 2.0 * c.mtp_depth * c.dim * c.vocab_size;                   // the shared head, per depth
  f += (c.n_layers + c.mtp_depth) * 2.0 * (qk + v) * (T + 1) / 2;  // q.k and p.v
  return f;
}

// One measurement on the recipe's device; on cpu with bf16_gemm set, on a CpuBackend running
// that bf16 GEMM.
void measure(const Recipe& recipe, const std::string& recipe_path, int steps, int warmup,
             int threads, bool profile, std::optional<kernels::Bf16Gemm> bf16_gemm) {
  const ModelConfig& mc = recipe.model;
  const int64_t B = recipe.train.global_batch, T = recipe.train.seq_len;

  const std::unique_ptr<kernels::Backend> device =
      bf16_gemm ? std::make_unique<kernels::CpuBackend>(*bf16_gemm)
                : kernels::make_backend(recipe.run.device);
  // Which bf16 GEMM the block linears ran ("-": not a cpu bf16 run).
  std::string bf16 = "-";
  if (const auto* cpu = dynamic_cast<const kernels::CpuBackend*>(device.get());
      cpu && recipe.precision.compute == "bf16") {
    bf16 = kernels::bf16_gemm_name(cpu->bf16_gemm());
  }
  std::unique_ptr<kernels::ProfilingBackend> profiler;
  if (profile) profiler = std::make_unique<kernels::ProfilingBackend>(*device);
  kernels::Backend* const backend = profiler ? profiler.get() : device.get();
  Model model(mc, *backend);
  ParamTable& params = model.params();
  params.init(recipe.train.seed, mc.init_std);
  AdamW optimizer(recipe.optimizer, params);
  Rng rng(42);
  std::vector<int32_t> tokens(B * mc.row_tokens(T));
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % mc.vocab_size);
  const LossScale scale{1.0 / (B * T), 1.0 / B, mtp_loss_weight(mc, 0)};

  // Wall and process CPU seconds per step: on a shared machine the CPU time (all threads
  // together) moves less with other people's load than the wall time.
  std::vector<double> times, cpu_times;
  for (int s = 0; s < warmup + steps; ++s) {
    if (profiler && s == warmup) profiler->reset();
    const auto t0 = Clock::now();
    const std::clock_t c0 = std::clock();
    params.zero_grads();
    model.TrainMicroBatch(tokens.data(), B, T, scale);
    const double norm = grad_norm(params);
    optimizer.Step(params, recipe.optimizer.lr, clip_scale(norm, recipe.optimizer.grad_clip));
    for (MoeBlock* moe : model.moe_blocks()) moe->update_bias(mc.bias_update_gamma);
    backend->synchronize();  // a device's step is over when its stream is
    if (s >= warmup) {
      times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      cpu_times.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
    }
  }
  if (profiler) {
    double total = 0;
    for (double t : times) total += t;
    std::printf("profile of %d steps (%.4f s per step; ops timed one by one):\n", steps,
                total / steps);
    profiler->print(stdout, total);
  }
  std::sort(times.begin(), times.end());
  const double step_s = times[times.size() / 2];  // median
  std::sort(cpu_times.begin(), cpu_times.end());
  const double step_cpu_s = cpu_times[cpu_times.size() / 2];
  const double tokens_per_s = B * T / step_s;
  const double gflops = 3 * forward_flops_per_token(recipe) * tokens_per_s / 1e9;
  const double peak = bench::measured_sgemm_peak(0.25);
  std::printf("tessera: %s  params %lld  batch %lld x %lld  threads %d  gemm %s  "
              "bf16 gemm %s\n",
              recipe_path.c_str(), static_cast<long long>(params.numel()),
              static_cast<long long>(B), static_cast<long long>(T), threads,
              kernels::gemm_backend_description().c_str(), bf16.c_str());
  std::printf("  median step %.4f s   %.0f tokens/s   %.1f GFLOP/s   SGEMM peak %.1f GFLOP/s   "
              "%.1f%% of peak   (CPU %.4f s a step: %.0f tokens per CPU second)\n",
              step_s, tokens_per_s, gflops, peak, 100 * gflops / peak, step_cpu_s,
              B * T / step_cpu_s);
  std::printf("{\"impl\":\"tessera\",\"tokens_per_s\":%.1f,\"step_s\":%.5f,\"gflops\":%.2f,"
              "\"sgemm_peak_gflops\":%.2f,\"fraction_of_peak\":%.4f,\"threads\":%d,\"gemm\":\"%s\","
              "\"bf16_gemm\":\"%s\"}\n",
              tokens_per_s, step_s, gflops, peak, gflops / peak, threads,
              kernels::gemm_backend_description().c_str(), bf16.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string recipe_path = "recipes/bench-moe.yaml";
  int steps = 10, warmup = 2, threads = 1;
  bool profile = false;
  std::string bf16_gemms;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << a << "\n";
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--recipe") recipe_path = v;
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--warmup") warmup = std::stoi(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--profile") profile = std::stoi(v) != 0;
    else if (a == "--set") overrides.push_back(v);
    else if (a == "--bf16-gemm") bf16_gemms = v;
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  Recipe recipe;
  try {
    recipe = load_recipe(recipe_path, overrides);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  kernels::keep_freed_host_memory();
  kernels::set_cpu_threads(threads);
  std::vector<std::optional<kernels::Bf16Gemm>> runs;
  std::stringstream list(bf16_gemms);
  for (std::string name; std::getline(list, name, ',');) {
    if (recipe.run.device != "cpu" || (name != "native" && name != "emulated")) {
      std::cerr << "--bf16-gemm " << bf16_gemms
                << ": expected native and/or emulated, comma-separated, on run.device cpu\n";
      return 2;
    }
    runs.push_back(name == "native" ? kernels::Bf16Gemm::kNative : kernels::Bf16Gemm::kEmulated);
  }
  if (runs.empty()) runs.push_back(std::nullopt);
  try {
    for (const auto& run : runs) measure(recipe, recipe_path, steps, warmup, threads, profile, run);
  } catch (const std::exception& e) {  // e.g. native asked of a CPU without bf16
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
