// The sbatch script of a tessera job (`tessera submit`, `tessera sweep`). The script:
//  - asks for the resources of the recipe's `slurm` section, --requeue, --open-mode=append and a
//    warning signal (--signal=B:USR1@slurm.signal_seconds) to the batch shell;
//  - pins the recipe: the resolved recipe is written into the run directory (submit), or each
//    array task trains its own recipe file written by the sweep;
//  - runs `srun` (or `mpirun`) `tessera train RECIPE --resume auto` in the background and, on USR1
//    or TERM, forwards USR1 to the step so every rank checkpoints after its current step;
//  - afterwards exits 0 if run.dir/DONE exists; else, if it was stopped by a signal (its own, or
//    the step exiting 0 without DONE: a signal sent to the step directly) and SLURM_RESTART_COUNT
//    (unset = 0) < slurm.max_restarts, logs why and runs `scontrol requeue $SLURM_JOB_ID`; else
//    exits non-zero with a message.
// Every recipe value in the script is validated (slurm_config.h) and every value bash reads is
// single-quoted (shell_quote.h); the recipe text sits in a quoted here-document.
#pragma once

#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::cluster {

struct JobTask {
  std::string recipe_path;  // recipe the step trains (relative paths: to JobSpec::workdir)
  std::string recipe_yaml;  // if non-empty, the script writes this text to recipe_path first
  std::string run_dir;      // the recipe's run.dir: DONE and checkpoints/ live there
  long long ntasks = 1;     // processes of the step: parallel.pp * parallel.dp
};

struct JobSpec {
  trainer::SlurmConfig slurm;  // REQUIRES: validate_slurm_config passed
  std::string source;          // what the values came from, for the script's header comment
  std::string tessera;         // absolute path of the binary the job runs
  std::string workdir;         // absolute: --chdir, where relative recipe paths resolve
  std::string output;          // --output pattern (%j, %A, %a allowed), relative to workdir
  std::vector<JobTask> tasks;  // one task, or (array) task i runs as array index i
  bool array = false;
  int array_limit = 0;         // %N: array tasks running at once (0 = no limit)
};

// The script text. Throws std::invalid_argument if a path cannot be written safely (a NUL byte,
// or a path in an #SBATCH line that check_sbatch_path rejects: the error names it).
std::string render_job_script(const JobSpec& spec);

}  // namespace tessera::cluster
