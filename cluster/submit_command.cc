#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "cluster/commands.h"
#include "cluster/job_script.h"
#include "cluster/sbatch.h"
#include "cluster/slurm_config.h"
#include "trainer/command_line.h"

namespace tessera::cluster {

namespace po = boost::program_options;
namespace fs = std::filesystem;

int run_submit_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera submit RECIPE [--set key.path=value]... [--dry-run]\n\n"
      "Submits a Slurm job (sbatch) that trains RECIPE and prints its job id. The job asks for\n"
      "the resources of the recipe's slurm section (slurm.nodes * slurm.ntasks_per_node must\n"
      "equal parallel.pp * parallel.dp), writes the resolved recipe to run.dir/job/recipe.yaml,\n"
      "runs `srun tessera train run.dir/job/recipe.yaml --resume auto` (slurm.launcher: mpirun\n"
      "for mpirun) and logs to run.dir/job/slurm-JOBID.out. On the warning signal\n"
      "(slurm.signal_seconds before slurm.time) or on preemption it checkpoints and requeues\n"
      "itself, at most slurm.max_restarts times; the restarted job resumes from the checkpoint.\n"
      "Relative paths in the recipe resolve against the directory tessera submit runs in.\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a recipe key, e.g. --set slurm.partition=gpu (repeatable)")
      ("dry-run", "print the job script instead of submitting it")
      ("tessera", po::value<std::string>(),
       "tessera binary the job runs (default: this one)");
  po::variables_map vm;
  if (auto status = trainer::parse_recipe_command("submit", args, visible, vm)) return *status;
  const std::optional<trainer::Recipe> recipe = trainer::load_recipe_from("submit", vm);
  if (!recipe) return 2;
  try {
    const long long world = recipe->parallel.pp * recipe->parallel.dp;
    validate_slurm_config(*recipe, world, /*exact_tasks=*/true);
    const std::string run_dir = recipe->run.dir;
    JobSpec spec;
    spec.slurm = recipe->slurm;
    spec.source = recipe->source;
    spec.tessera = vm.count("tessera") ? fs::absolute(vm["tessera"].as<std::string>()).string()
                                       : this_executable();
    spec.workdir = fs::current_path().string();
    spec.output = run_dir + "/job/slurm-%j.out";
    spec.tasks.push_back({run_dir + "/job/recipe.yaml", trainer::recipe_to_yaml(*recipe), run_dir,
                          world});
    const std::string script = render_job_script(spec);
    if (vm.count("dry-run")) {
      std::cout << script;
      return 0;
    }
    const std::string script_path = run_dir + "/job/job.sh";
    const std::string id = sbatch_submit(script, script_path);
    std::cerr << "tessera submit: job " << id << " (" << script_path << "), log " << run_dir
              << "/job/slurm-" << id << ".out\n";
    std::cout << id << "\n";
    return 0;
  } catch (const trainer::RecipeError& e) {
    std::cerr << "tessera submit: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "tessera submit: " << recipe->source << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tessera submit: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tessera::cluster
