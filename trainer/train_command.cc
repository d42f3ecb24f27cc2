#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "parallel/schedule_registry.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/crashing_env.h"
#include "trainer/command_line.h"
#include "trainer/commands.h"
#include "trainer/memory_plan.h"
#include "trainer/param_count.h"
#include "trainer/rank_log.h"
#include "trainer/run_dir_claim.h"
#include "trainer/trainer.h"

namespace tessera::trainer {

namespace po = boost::program_options;

namespace {

// parallel.schedule's choices, from the schedule registry.
std::string schedules_help() {
  std::string out = "Pipeline schedules (parallel.schedule; constraints are checked before anything runs):\n";
  for (const parallel::ScheduleInfo& row : parallel::schedule_registry()) {
    out += "  " + row.name + std::string(row.name.size() < 12 ? 12 - row.name.size() : 1, ' ') +
           row.summary + (row.constraints == "-" ? "" : "; needs " + row.constraints) + "\n";
  }
  return out + "parallel.overlap (default true): FB pairs interleave their pieces; false runs them "
               "as F then B\n(identical results).\n\n";
}

// The limits that turn a stalled or dead rank into an error on every rank (parallel/liveness.h,
// parallel/blocking_watch.h, trainer/checkpoint/writer.h).
std::string failure_detection_help() {
  return "Failure detection (environment variables; when one rank fails, every rank exits):\n"
         "  TESSERA_COMM_STALL_S (default 10): a communication pending this long asks the ranks it\n"
         "    waits for whether they are alive, and again every as long; a rank that does not\n"
         "    answer within 5 s (stopped, hung or dead) ends the run, named by world rank, host\n"
         "    and pid. 0 turns the checks off.\n"
         "  TESSERA_COMM_TIMEOUT_S (default 300): ends a communication that live peers never\n"
         "    complete (a deadlock); the error says what each peer was doing.\n"
         "  TESSERA_CHECKPOINT_TIMEOUT_S (default 600 + 1 s per 20 MB of the rank's share): the\n"
         "    same for a checkpoint's collective HDF5 reads and writes (checked for stalls too).\n"
         "  Waiting ranks back off instead of spinning. Lines about long waits and the error that\n"
         "  ends a run are also in logs/rank-R.log.\n\n";
}

}  // namespace

int run_train_command(const std::vector<std::string>& args) {
  po::options_description visible(
      std::string("Usage: tessera train RECIPE [--set key.path=value]...\n"
      "       mpirun -np N tessera train RECIPE --set parallel.pp=P --set parallel.dp=N/P "
      "[--set parallel.ep=E] ...\n\n"
      "Trains the model of RECIPE (YAML). Writes under run.dir: metrics.jsonl (one JSON object per\n"
      "step), recipe.yaml (the resolved recipe), logs/rank-R.log (one per process) and\n"
      "checkpoints/step-NNNNNNNN/{model.h5,trainer.yaml}. The dataset at data.path is written by\n"
      "`tessera prepare`. Under mpirun the processes form parallel.pp pipeline stages (schedule\n"
      "parallel.schedule over parallel.micro_batches) times parallel.dp data replicas (ZeRO-1), and\n"
      "parallel.ep of the replicas split the routed experts; pp x dp must equal the number of\n"
      "processes and ep must divide dp and model.n_experts. Any layout trains the same model.\n"
      "World rank 0 holds run.dir/.tessera.lock (\"host pid\") while the run lives: a second run\n"
      "into the same run.dir is refused (exit 1), naming the holder.\n\n") +
      schedules_help() + failure_detection_help() + "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a recipe key, e.g. --set train.steps=10 (repeatable)")
      ("resume", po::value<std::string>(),
       "continue from a checkpoint: 'auto' = the newest valid one under run.dir/checkpoints "
       "(a fresh start if there is none), or a step/checkpoints/run directory")
      ("overwrite",
       "start over in a run.dir that holds a previous run: delete its checkpoints/, "
       "metrics.jsonl, DONE, logs/ and trace first (without --resume or --overwrite such a "
       "run.dir is refused, exit 2)")
      ("cluster", po::value<std::string>(),
       "cluster description (YAML, as `tessera plan` reads): its device's peak TFLOP/s at "
       "precision.compute sets run.peak_tflops, so the metrics report mfu (the planner's FLOP "
       "formulas)")
      ("dry-run",
       "print the parameter counts (main model, activated per token, MTP modules, per pipeline "
       "stage) and each rank's planned device memory by kind (parameters, gradients, optimizer "
       "state, activations = micro-batch contexts x arena, pipeline buffers) for the recipe's "
       "layout on run.device, then exit; allocates nothing and needs no mpirun");
  po::variables_map vm;
  if (auto status = parse_recipe_command("train", args, visible, vm)) return *status;
  if (vm.count("cluster")) {  // the entry point (cluster/main.cc) resolves it before train runs
    std::cerr << "tessera train: --cluster is resolved by the tessera binary's entry point\n";
    return 2;
  }
  if (vm.count("overwrite") && vm.count("resume")) {
    std::cerr << "tessera train: --overwrite starts over and --resume continues: pass one\n";
    return 2;
  }

  std::unique_ptr<parallel::MpiComm> world = parallel::MpiComm::world();
  const bool root = world->rank() == 0;
  const std::optional<Recipe> recipe = load_recipe_from("train", vm, /*print=*/root);
  if (!recipe) return 2;  // every rank sees the same recipe error and exits
  if (vm.count("dry-run")) {
    try {
      const kernels::Device device =
          recipe->run.device == "cuda" ? kernels::Device::kCUDA : kernels::Device::kCPU;
      const ParameterCounts counts = count_parameters(*recipe);
      const std::vector<RankMemory> plan = plan_memory(*recipe, device);
      if (root) {
        std::cout << "tessera train --dry-run: " << recipe->source << "\n"
                  << format_parameter_counts(counts) << plan.size() << " rank(s) on "
                  << recipe->run.device << ", planned memory per rank (MiB):\n"
                  << format_memory_plan(plan);
      }
    } catch (const RecipeError& e) {
      if (root) std::cerr << "tessera train: " << e.what() << "\n";
      return 2;
    }
    return 0;
  }
  // Crash tests (TESSERA_CHECKPOINT_CRASH=<point>[@<step>]): the process dies at that point of a
  // checkpoint save. Declared before the try: a write in flight may use it until the job ends.
  std::optional<CrashingEnv> crashing_env;
  try {
    TrainOptions options;
    if (const char* spec = std::getenv("TESSERA_CHECKPOINT_CRASH"); spec && *spec) {
      options.checkpoint_env = &crashing_env.emplace(CheckpointEnv::Posix(), spec);
    }
    if (vm.count("resume")) options.resume = vm["resume"].as<std::string>();
    options.overwrite = vm.count("overwrite") > 0;
    train(*recipe, *world, std::cout, options);
  } catch (const RecipeError& e) {  // layout errors: identical on every rank
    if (root) std::cerr << "tessera train: " << e.what() << "\n";
    return 2;
  } catch (const RunDirRefused& e) {  // rank 0's verdict on run.dir, broadcast to every rank
    if (root) std::cerr << "tessera train: " << e.what() << "\n";
    return e.exit_status();
  } catch (const CheckpointWriteFailed& e) {  // must not reach MPI_Finalize (checkpoint.h)
    RankLog::append(recipe->run.dir, world->rank(), std::string("error: ") + e.what());
    parallel::abort_all(std::string("tessera train: error: ") + e.what(), 1);
  } catch (const std::exception& e) {
    RankLog::append(recipe->run.dir, world->rank(), std::string("error: ") + e.what());
    // One rank's failure must end every rank: its peers would wait in a collective forever.
    if (world->size() > 1) parallel::abort_all(std::string("tessera train: error: ") + e.what(), 1);
    std::cerr << "tessera train: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace tessera::trainer
