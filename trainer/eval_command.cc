#include <boost/program_options.hpp>
#include <iostream>

#include "trainer/checkpoint.h"
#include "trainer/commands.h"
#include "trainer/evaluate.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/recipe.h"
#include "kernels/gemm.h"

namespace tessera::trainer {

namespace po = boost::program_options;

int run_eval_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera eval RECIPE --checkpoint DIR --data DIR [--batches N] [--set k=v]...\n\n"
      "Mean cross-entropy of a checkpoint on the validation split of a dataset. The model shape\n"
      "comes from RECIPE; batches have train.global_batch sequences of train.seq_len tokens.\n"
      "Progress goes to stderr; the last line on stdout is a JSON object with loss and tokens.\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("checkpoint", po::value<std::string>(),
       "a step directory, a checkpoints directory (uses its `latest`) or a run directory")
      ("data", po::value<std::string>(), "dataset directory written by `tessera prepare`")
      ("batches", po::value<int64_t>(), "batches to evaluate (default: train.eval_batches; "
                                         "fewer if the split is smaller)")
      ("set", po::value<std::vector<std::string>>()->composing(), "override a recipe key");
  po::options_description all;
  all.add(visible).add_options()("recipe", po::value<std::string>());
  po::positional_options_description pos;
  pos.add("recipe", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera eval: " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  for (const char* required : {"recipe", "checkpoint", "data"}) {
    if (!vm.count(required)) {
      std::cerr << "tessera eval: missing " << (std::string(required) == "recipe" ? "RECIPE" : std::string("--") + required)
                << "\n" << visible << "\n";
      return 2;
    }
  }
  Recipe recipe;
  try {
    recipe = load_recipe(vm["recipe"].as<std::string>(),
                         vm.count("set") ? vm["set"].as<std::vector<std::string>>()
                                         : std::vector<std::string>{});
  } catch (const RecipeError& e) {
    std::cerr << "tessera eval: " << e.what() << "\n";
    return 2;
  }
  const int64_t batches = vm.count("batches") ? vm["batches"].as<int64_t>()
                                              : recipe.train.eval_batches;
  if (batches < 1) {
    std::cerr << "tessera eval: --batches must be >= 1, got " << batches << "\n";
    return 2;
  }
  try {
    kernels::set_cpu_threads(static_cast<int>(recipe.run.cpu_threads));
    Model model(recipe.model);
    const std::string dir = resolve_checkpoint(vm["checkpoint"].as<std::string>());
    const int64_t step = load_checkpoint(dir, model.params(), /*with_optimizer=*/false);
    std::cerr << "tessera eval: " << dir << " (step " << step << ")\n";
    const EvalResult r = evaluate(
        model, vm["data"].as<std::string>(), recipe.train.seq_len, recipe.train.global_batch,
        batches, [](int64_t done, int64_t total) {
          std::cerr << "tessera eval: batch " << done << "/" << total << "\n";
        });
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
