// `tessera checkpoint verify|info DIR`: check a checkpoint against its checksums, or describe it
// and check it;
// `export` and `import` (Hugging Face checkpoints) live in hf_checkpoint_command.cc.
#include <iostream>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/commands.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

namespace {

constexpr const char* kUsage =
    "Usage: tessera checkpoint verify DIR   check trainer.yaml against its content_checksum and\n"
    "                                       every dataset against trainer.yaml's checksums, and\n"
    "                                       model.h5's step against trainer.yaml's (exit 1 on any\n"
    "                                       problem)\n"
    "       tessera checkpoint info DIR     print the step, the layout that wrote it, its tensors,\n"
    "                                       then check them as verify does (exit 1 if damaged)\n"
    "       tessera checkpoint export DIR --format hf --out OUT [--dtype bf16|fp32] [--shard-mb N]\n"
    "                                       the model as a Hugging Face DeepSeek-V3 checkpoint\n"
    "       tessera checkpoint import HF_DIR --recipe RECIPE --out DIR\n"
    "                                       a step-0 checkpoint of RECIPE's model from one\n\n"
    "DIR: a step directory, a checkpoints directory (uses its `latest`) or a run directory.\n"
    "`tessera checkpoint export --help` and `import --help` tell more.\n";

int verify(const std::string& dir) {
  const std::vector<std::string> problems = verify_checkpoint(dir);
  for (const std::string& p : problems) std::cout << "damaged: " << p << "\n";
  if (!problems.empty()) {
    std::cout << dir << ": " << problems.size() << " problem(s)\n";
    return 1;
  }
  std::cout << dir << ": ok\n";
  return 0;
}

int info(const std::string& dir) {
  const CheckpointInfo i = read_checkpoint_info(dir);
  const Recipe recipe = parse_recipe(i.recipe_yaml, dir + "/trainer.yaml");
  std::cout << "checkpoint " << dir << "\n"
            << "  step " << i.meta.step << ", tokens seen " << i.meta.tokens_seen
            << ", optimizer step " << i.meta.optimizer_step << ", loader epoch "
            << i.meta.loader_epoch << " cursor " << i.meta.loader_cursor << "\n"
            << "  written by " << i.meta.world_size << " process(es): " << i.layout << "\n"
            << "  format version " << i.format_version << "\n";
  int64_t elements = 0;
  const std::vector<CheckpointTensor> tensors = checkpoint_tensors(recipe.model);
  for (const CheckpointTensor& t : tensors) elements += t.numel();
  std::cout << "  " << tensors.size() << " tensors, " << elements << " float32 elements ("
            << elements * 4 / 1e6 << " MB):\n";
  for (const CheckpointTensor& t : tensors) {
    std::cout << "    " << t.name << " " << kernels::shape_string(t.shape) << "\n";
  }
  // A description of a damaged checkpoint must not read as a sound one.
  const std::vector<std::string> problems = verify_checkpoint(dir);
  for (const std::string& p : problems) std::cout << "damaged: " << p << "\n";
  if (!problems.empty()) {
    std::cout << dir << ": " << problems.size() << " problem(s); `tessera checkpoint verify` "
              << "says the same\n";
    return 1;
  }
  std::cout << "  checksums: ok (" << tensors.size() << " datasets"
            << (i.format_version < 3 ? "; format 2: trainer.yaml has no content checksum)\n"
                                     : " and trainer.yaml)\n");
  return 0;
}

}  // namespace

int run_checkpoint_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "export") return run_checkpoint_export_command(rest);
  if (args[0] == "import") return run_checkpoint_import_command(rest);
  if (args[0] != "verify" && args[0] != "info") {
    std::cerr << "tessera checkpoint: unknown action '" << args[0]
              << "': expected `verify DIR`, `info DIR`, `export ...` or `import ...`\n\n"
              << kUsage;
    return 2;
  }
  if (args.size() != 2) {
    std::cerr << "tessera checkpoint " << args[0] << ": expected one DIR, got " << rest.size()
              << " argument(s)\n\n" << kUsage;
    return 2;
  }
  try {
    const std::string dir = resolve_checkpoint(args[1]);
    return args[0] == "verify" ? verify(dir) : info(dir);
  } catch (const std::exception& e) {
    std::cerr << "tessera checkpoint " << args[0] << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tessera::trainer
