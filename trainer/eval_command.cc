#include <boost/program_options.hpp>
#include <cmath>
#include <iostream>
#include <thread>

#include "kernels/factory/make_backend.h"
#include "kernels/gemm.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/command_line.h"
#include "trainer/commands.h"
#include "trainer/cpu_threads_check.h"
#include "trainer/evaluate.h"
#include "trainer/metrics.h"
#include "trainer/model.h"

namespace tessera::trainer {

namespace po = boost::program_options;

int run_eval_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera eval RECIPE --checkpoint DIR --data DIR [--batches N] [--set k=v]...\n\n"
      "Mean cross-entropy of a checkpoint on the validation split of a dataset. The model shape\n"
      "comes from RECIPE; batches have train.global_batch sequences of train.seq_len tokens.\n"
      "Progress goes to stderr; the last line on stdout is a JSON object with loss and tokens.\n"
      "The parameters read are checked against the checkpoint's checksums: a damaged checkpoint,\n"
      "or a loss that is not finite (NaN weights), is an error (exit 1) with no JSON line.\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("checkpoint", po::value<std::string>(),
       "a step directory, a checkpoints directory (uses its `latest`) or a run directory")
      ("data", po::value<std::string>(), "dataset directory written by `tessera prepare`")
      ("batches", po::value<int64_t>(), "batches to evaluate (default: train.eval_batches; "
                                         "fewer if the split is smaller)")
      ("set", po::value<std::vector<std::string>>()->composing(), "override a recipe key");
  po::variables_map vm;
  if (auto status = parse_recipe_command("eval", args, visible, vm)) return *status;
  for (const char* required : {"checkpoint", "data"}) {
    if (!vm.count(required)) {
      std::cerr << "tessera eval: missing --" << required << "\n" << visible << "\n";
      return 2;
    }
  }
  const std::optional<Recipe> loaded = load_recipe_from("eval", vm);
  if (!loaded) return 2;
  const Recipe& recipe = *loaded;
  const int64_t batches = vm.count("batches") ? vm["batches"].as<int64_t>()
                                              : recipe.train.eval_batches;
  if (batches < 1) {
    std::cerr << "tessera eval: --batches must be >= 1, got " << batches << "\n";
    return 2;
  }
  try {
    check_cpu_threads(recipe.run.cpu_threads, std::thread::hardware_concurrency());
  } catch (const RecipeError& e) {
    std::cerr << "tessera eval: " << e.what() << "\n";
    return 2;
  }
  try {
    kernels::set_cpu_threads(static_cast<int>(recipe.run.cpu_threads));
    const std::unique_ptr<kernels::Backend> backend = kernels::make_backend(recipe.run.device);
    Model model(recipe.model, *backend);
    const std::string dir = resolve_checkpoint(vm["checkpoint"].as<std::string>());
    const int64_t step = load_checkpoint(dir, model.params());
    std::cerr << "tessera eval: " << dir << " (step " << step << ")\n";
    const EvalResult r = evaluate(
        model, vm["data"].as<std::string>(), recipe.train.seq_len, recipe.train.global_batch,
        batches, [](int64_t done, int64_t total) {
          std::cerr << "tessera eval: batch " << done << "/" << total << "\n";
        });
    // A NaN or infinite loss is no result (weights holding NaN, or no tokens): say so, exit 1.
    if (!std::isfinite(r.loss)) {
      throw std::runtime_error("the loss of " + dir + " is not finite (" + std::to_string(r.loss) +
                               " over " + std::to_string(r.tokens) +
                               " tokens): its weights hold NaN or Inf");
    }
    JsonLine line;
    line.add("loss", r.loss).add("tokens", r.tokens).add("batches", r.batches)
        .add("step", step).add("checkpoint", dir);
    std::cout << line.str() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "tessera eval: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace tessera::trainer
