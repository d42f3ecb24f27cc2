// Writes one test case for the PyTorch reference check (compare.py):
//   DIR/model.yaml  the resolved recipe      DIR/model.h5  parameters under DESIGN.md names
//   DIR/batch.h5    tokens int32 [B, T+1]    DIR/grads.h5  every trainable gradient, the loss
//                                                          (attrs) and routing/layers.{i}
// Usage: dump_reference_case RECIPE --out DIR [--batch B] [--bias-std S] [--set k=v]...
// Gate biases are drawn random (they start at zero in training) so the check covers biased
// selection.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/model.h"
#include "trainer/recipe.h"
#include "trainer/rng.h"

using namespace tessera::trainer;

int main(int argc, char** argv) {
  std::string recipe_path, out_dir;
  int64_t batch = 2;
  double bias_std = 0.05;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--out") out_dir = next();
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--bias-std") bias_std = std::stod(next());
    else if (a == "--set") overrides.push_back(next());
    else if (recipe_path.empty()) recipe_path = a;
    else { std::cerr << "unexpected argument " << a << "\n"; return 2; }
  }
  if (recipe_path.empty() || out_dir.empty()) {
    std::cerr << "usage: dump_reference_case RECIPE --out DIR [--batch B] [--bias-std S] "
                 "[--set k=v]...\n";
    return 2;
  }
  const Recipe recipe = load_recipe(recipe_path, overrides);
  const ModelConfig& mc = recipe.model;
  const int64_t T = recipe.train.seq_len;
  std::filesystem::create_directories(out_dir);

  tessera::kernels::CpuBackend cpu;
  Model model(mc, cpu);
  ParamTable& params = model.params();
  params.init(recipe.train.seed, mc.init_std);
  Rng rng(recipe.train.seed + 17);
  for (MoeBlock* moe : model.moe_blocks()) {
    float* bias = params.value_ptr(params.index(moe->prefix() + "moe.gate.bias"));
    for (int64_t e = 0; e < moe->n_experts(); ++e) bias[e] = static_cast<float>(bias_std * rng.normal());
  }
  const int64_t row = mc.row_tokens(T);  // T + 1 + mtp_depth
  std::vector<int32_t> tokens(batch * row);
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % mc.vocab_size);

  params.zero_grads();
  const LossScale scale{1.0 / (batch * T), 1.0 / batch, mtp_loss_weight(mc, 0)};
  const MicroBatchLoss loss = model.TrainMicroBatch(tokens.data(), batch, T, scale);

  std::ofstream(out_dir + "/model.yaml") << recipe_to_yaml(recipe);
  {
    H5File f(out_dir + "/model.h5", H5File::Mode::kCreate);
    for (size_t i = 0; i < params.descs().size(); ++i) {
      f.write_f32(params.descs()[i].name, params.descs()[i].shape, params.value_ptr(i));
    }
  }
  {
    H5File f(out_dir + "/batch.h5", H5File::Mode::kCreate);
    f.write_i32("tokens", {batch, row}, tokens.data());
  }
  {
    H5File f(out_dir + "/grads.h5", H5File::Mode::kCreate);
    for (size_t i = 0; i < params.descs().size(); ++i) {
      const ParamDesc& d = params.descs()[i];
      if (d.trainable) f.write_f32(d.name, d.shape, params.grad_ptr(i));
    }
    f.write_attr_f64("loss", loss.loss);
    f.write_attr_f64("ce_loss", loss.ce_sum / static_cast<double>(loss.tokens));
    for (size_t d = 0; d < loss.mtp_ce_sum.size(); ++d) {
      f.write_attr_f64("mtp_loss." + std::to_string(d),
                       loss.mtp_ce_sum[d] / static_cast<double>(loss.tokens));
    }
    for (size_t i = 0; i < model.moe_blocks().size(); ++i) {
      const std::string& prefix = model.moe_blocks()[i]->prefix();  // "layers.{i}."
      f.write_i32("routing/" + prefix.substr(0, prefix.size() - 1),
                  {batch * T, mc.top_k}, model.routing(static_cast<int>(i)));
    }
  }
  std::cout << "dump_reference_case: loss " << loss.loss << " -> " << out_dir << "\n";
  return 0;
}
