// Checks of the recipe's `slurm` section beyond the schema's types and ranges: every value that
// reaches an #SBATCH line or the job script must have a form Slurm accepts and sbatch's own
// #SBATCH parser cannot misread (no whitespace, quotes, backslashes, '#', '%', control bytes).
// Values that reach bash are quoted as well (job_script.h); these checks are the first wall.
#pragma once

#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::cluster {

struct EnvVar {
  std::string name;   // [A-Za-z_][A-Za-z0-9_]*
  std::string value;  // any bytes but NUL (the script single-quotes it)
};

// ';'-separated items, each trimmed of spaces and tabs; empty items are dropped.
std::vector<std::string> split_list(const std::string& text);

// slurm.env as name/value pairs. REQUIRES: validate_slurm_config passed.
std::vector<EnvVar> slurm_env(const trainer::SlurmConfig& slurm);

// Seconds in a Slurm time limit ("30", "10:00", "1:00:00", "2-00", "2-00:30", "2-00:30:00"); -1
// if `text` is not one.
long long time_limit_seconds(const std::string& text);

// Throws trainer::RecipeError "<recipe.source>: slurm.<key>: <problem>" for the first bad value.
// `world` is the number of processes the job's step runs (parallel.pp * parallel.dp, or a sweep's
// largest point): the allocation, slurm.nodes * slurm.ntasks_per_node, must equal it when
// `exact_tasks`, else be at least it.
void validate_slurm_config(const trainer::Recipe& recipe, long long world, bool exact_tasks);

// A path fit for an #SBATCH line (--chdir, --output): throws trainer::RecipeError naming `what`
// when it holds whitespace, a quote, a backslash, '#', '%' or a control byte.
void check_sbatch_path(const std::string& path, const std::string& what);

}  // namespace tessera::cluster
