// `tessera checkpoint export --format hf` and `tessera checkpoint import`: Hugging Face
// DeepSeek-V3 checkpoints from and to tessera's (trainer/hf_checkpoint.h).
#include <boost/program_options.hpp>
#include <iostream>
#include <optional>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/commands.h"
#include "trainer/hf_checkpoint.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

namespace po = boost::program_options;

namespace {

// Parses `args` against `visible` plus one positional argument named `positional`. Returns an
// exit status when the command should stop (0 after --help, 2 after a usage error).
std::optional<int> parse(const std::string& command, const std::vector<std::string>& args,
                         const po::options_description& visible, const char* positional,
                         const std::vector<const char*>& required, po::variables_map& vm) {
  po::options_description all;
  all.add(visible).add_options()(positional, po::value<std::string>());
  po::positional_options_description pos;
  pos.add(positional, 1);
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera checkpoint " << command << ": " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  if (!vm.count(positional)) {
    std::cerr << "tessera checkpoint " << command << ": missing " << positional << "\n"
              << visible << "\n";
    return 2;
  }
  for (const char* key : required) {
    if (!vm.count(key)) {
      std::cerr << "tessera checkpoint " << command << ": missing --" << key << "\n" << visible << "\n";
      return 2;
    }
  }
  return std::nullopt;
}

}  // namespace

int run_checkpoint_export_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera checkpoint export DIR --format hf --out OUT [--dtype bf16|fp32] "
      "[--shard-mb N]\n\n"
      "Writes the model of a tessera checkpoint as a Hugging Face DeepSeek-V3 checkpoint: "
      "OUT/config.json,\nOUT/model-0000k-of-0000n.safetensors and "
      "OUT/model.safetensors.index.json (written last). DIR: a\nstep directory, a checkpoints "
      "directory (its `latest`) or a run directory. Parameters only (no\nAdamW moments); routing "
      "biases stay F32; each MTP layer gets copies of the embedding and head.\nMHA models use "
      "Llama-style q/k/v_proj names and \"tessera_attention\": \"mha\" (no Hugging Face\nclass "
      "loads them; `tessera checkpoint import` does).\n\nOptions");
  visible.add_options()
      ("help,h", "show this help")
      ("format", po::value<std::string>(), "output format: hf (the only one)")
      ("out", po::value<std::string>(), "output directory (must not exist, or be empty)")
      ("dtype", po::value<std::string>()->default_value("bf16"), "weights as bf16 (rounded to "
       "nearest even) or fp32 (bit exact)")
      ("shard-mb", po::value<double>()->default_value(4096), "largest shard file in MiB (a larger "
       "tensor gets a file of its own)");
  po::variables_map vm;
  if (auto status = parse("export", args, visible, "DIR", {"format", "out"}, vm)) return *status;
  if (vm["format"].as<std::string>() != "hf") {
    std::cerr << "tessera checkpoint export: --format must be hf, got "
              << vm["format"].as<std::string>() << "\n";
    return 2;
  }
  HfExportOptions options;
  options.dtype = vm["dtype"].as<std::string>();
  options.shard_mb = vm["shard-mb"].as<double>();
  if (options.dtype != "bf16" && options.dtype != "fp32") {
    std::cerr << "tessera checkpoint export: --dtype must be bf16 or fp32, got " << options.dtype << "\n";
    return 2;
  }
  if (!(options.shard_mb > 0)) {
    std::cerr << "tessera checkpoint export: --shard-mb must be > 0\n";
    return 2;
  }
  try {
    const std::string dir = resolve_checkpoint(vm["DIR"].as<std::string>());
    const std::string out = vm["out"].as<std::string>();
    export_hf_checkpoint(dir, out, options, &std::cout);
    std::cout << "tessera checkpoint export: " << dir << " -> " << out << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tessera checkpoint export: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

int run_checkpoint_import_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera checkpoint import HF_DIR --recipe RECIPE --out DIR [--set k=v]...\n\n"
      "Makes a tessera checkpoint of the model of RECIPE from a Hugging Face DeepSeek-V3 "
      "checkpoint\n(config.json, model.safetensors.index.json and its shards, or one "
      "model.safetensors). config.json\nmust match the recipe's model section (a mismatch names "
      "the key). Reads F32, BF16 and F8_E4M3\ntensors (fp8 weights times their 128x128 block "
      "scales, <name>_scale_inv). MTP layers' copies of\nthe embedding and head are checked "
      "against the main ones (a warning if they differ; tessera ties\nthem). Writes "
      "DIR/step-00000000 (AdamW moments zero) and DIR/latest; continue with\n"
      "`tessera train RECIPE --resume DIR`, in any layout.\n\nOptions");
  visible.add_options()
      ("help,h", "show this help")
      ("recipe", po::value<std::string>(), "the recipe whose model the checkpoint holds")
      ("out", po::value<std::string>(), "checkpoints directory to write (must not exist, or be "
       "empty)")
      ("set", po::value<std::vector<std::string>>()->composing(), "override a recipe key "
       "(repeatable)");
  po::variables_map vm;
  if (auto status = parse("import", args, visible, "HF_DIR", {"recipe", "out"}, vm)) return *status;
  Recipe recipe;
  try {
    recipe = load_recipe(vm["recipe"].as<std::string>(),
                         vm.count("set") ? vm["set"].as<std::vector<std::string>>()
                                         : std::vector<std::string>{});
  } catch (const RecipeError& e) {
    std::cerr << "tessera checkpoint import: " << e.what() << "\n";
    return 2;
  }
  try {
    // The checkpoint writer is MPI-IO on a communicator of this process alone.
    parallel::MpiEnv mpi(nullptr, nullptr);
    if (mpi.world_size() > 1) {
      if (mpi.world_rank() == 0) std::cerr << "tessera checkpoint import: runs as one process\n";
      return 2;
    }
    const std::unique_ptr<parallel::MpiComm> self = parallel::MpiComm::world();
    const std::string step_dir = import_hf_checkpoint(*self, vm["HF_DIR"].as<std::string>(),
                                                      recipe, vm["out"].as<std::string>(),
                                                      &std::cout);
    std::cout << "tessera checkpoint import: wrote " << step_dir << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tessera checkpoint import: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace tessera::trainer
