#include "cluster/job_script.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "cluster/shell_quote.h"
#include "cluster/slurm_config.h"

namespace tessera::cluster {
namespace {

constexpr const char* kRecipeEnd = "TESSERA_RECIPE_END";

// A here-document body must not contain its terminator line.
void check_heredoc(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line == kRecipeEnd) {
      throw std::invalid_argument(std::string("the recipe text holds the line ") + kRecipeEnd);
    }
  }
}

std::string sbatch_path(const std::string& path, const std::string& what) {
  try {
    check_sbatch_path(path, what);
  } catch (const std::exception& e) {
    throw std::invalid_argument(e.what());
  }
  return path;
}

// Bash array literal of quoted words: ('a' 'b').
template <typename F>
std::string bash_array(const std::vector<JobTask>& tasks, F word) {
  std::string out = "(";
  for (size_t i = 0; i < tasks.size(); ++i) out += (i ? " " : "") + word(tasks[i]);
  return out + ")";
}

// The part after the task variables are set: identical for plain jobs and arrays.
constexpr const char* kBody = R"BODY(
restarts=${SLURM_RESTART_COUNT:-0}
say() { echo "tessera job ${SLURM_JOB_ID:-?}${array_tag}: $(date '+%F %T'): $*"; }
mkdir -p -- "$run_dir" || { say "cannot create run directory $run_dir"; exit 1; }

# Signals: the handlers only record; the loop below forwards USR1 to the step (srun and mpirun
# pass it to every rank, which checkpoints after its current step and exits 0).
signal=""
pending=""
trap 'signal=USR1; pending=USR1' USR1
trap 'signal=TERM; pending=TERM' TERM

say "start $((restarts + 1)) (SLURM_RESTART_COUNT=$restarts, slurm.max_restarts=$max_restarts): $ntasks processes train $recipe (--resume auto) in $run_dir"
case $launcher in
  srun) srun --ntasks="$ntasks" --kill-on-bad-exit=1 "$tessera" train "$recipe" --resume auto & ;;
  mpirun) mpirun -np "$ntasks" "$tessera" train "$recipe" --resume auto & ;;
esac
step=$!
resender=""
while :; do
  wait "$step"
  status=$?
  if [ -n "$pending" ]; then  # wait was interrupted by a trapped signal
    say "got SIG$pending: asking the training step to checkpoint and stop"
    kill -USR1 "$step" 2>/dev/null
    pending=""
    # A launcher drops a signal that comes before its ranks run (Slurm's warning has come in
    # the first second of a start): ask again every 10 s until the step ends.
    if [ -z "$resender" ]; then
      ( while sleep 10; do kill -USR1 "$step" 2>/dev/null || exit 0; done ) &
      resender=$!
    fi
    continue
  fi
  break
done
[ -n "$resender" ] && kill "$resender" 2>/dev/null

if [ -e "$run_dir/DONE" ]; then
  say "training complete ($run_dir/DONE exists)"
  exit 0
fi
if [ -n "$signal" ]; then
  why="SIG$signal"
elif [ "$status" -eq 0 ]; then
  why="a signal delivered to the training processes"
else
  say "training failed (exit status $status) without a stop signal: not requeueing"
  exit "$status"
fi
if [ "$restarts" -lt "$max_restarts" ]; then
  say "stopped by $why after checkpointing (exit status $status): requeueing, restart $((restarts + 1)) of at most $max_restarts"
  if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
  if [ "$signal" = TERM ]; then
    say "scontrol requeue failed; after SIGTERM Slurm requeues or ends the job itself"
    exit 0
  fi
  say "scontrol requeue failed: resubmit to continue from $run_dir/checkpoints/latest"
  exit 1
fi
say "stopped by $why, but the job already restarted $restarts times (slurm.max_restarts=$max_restarts): giving up; resubmit to continue from $run_dir/checkpoints/latest"
exit 3
)BODY";

}  // namespace

std::string render_job_script(const JobSpec& spec) {
  if (spec.tasks.empty()) throw std::invalid_argument("render_job_script: no tasks");
  if (!spec.array && spec.tasks.size() != 1) {
    throw std::invalid_argument("render_job_script: several tasks need an array job");
  }
  const trainer::SlurmConfig& s = spec.slurm;
  std::ostringstream o;
  o << "#!/bin/bash\n";
  // #SBATCH lines are read by sbatch, not bash; every value here passed validate_slurm_config
  // or check_sbatch_path.
  auto sb = [&](const std::string& option) { o << "#SBATCH " << option << "\n"; };
  sb("--job-name=" + s.job_name);
  if (!s.partition.empty()) sb("--partition=" + s.partition);
  if (!s.account.empty()) sb("--account=" + s.account);
  if (!s.qos.empty()) sb("--qos=" + s.qos);
  sb("--nodes=" + std::to_string(s.nodes));
  sb("--ntasks-per-node=" + std::to_string(s.ntasks_per_node));
  sb("--cpus-per-task=" + std::to_string(s.cpus_per_task));
  if (s.gpus_per_node > 0) sb("--gpus-per-node=" + std::to_string(s.gpus_per_node));
  sb("--time=" + s.time);
  sb("--requeue");
  sb("--open-mode=append");
  sb("--signal=B:USR1@" + std::to_string(s.signal_seconds));
  sb("--chdir=" + sbatch_path(spec.workdir, "the working directory"));
  {
    // The output pattern may hold %j/%A/%a; the rest of it must be sbatch-safe.
    std::string plain = spec.output;
    for (const char* esc : {"%j", "%A", "%a"}) {
      for (size_t at; (at = plain.find(esc)) != std::string::npos;) plain.replace(at, 2, "J");
    }
    sbatch_path(plain, "the job's output file " + spec.output + " (from run.dir)");
    sb("--output=" + spec.output);
  }
  if (spec.array) {
    std::string range = "0-" + std::to_string(spec.tasks.size() - 1);
    if (spec.array_limit > 0) range += "%" + std::to_string(spec.array_limit);
    sb("--array=" + range);
  }
  for (const std::string& option : split_list(s.extra)) sb(option);

  o << "# Written by tessera from " << (spec.source.find_first_of("\r\n") == std::string::npos
                                            ? spec.source
                                            : std::string("a recipe"))
    << ". Every value below is single-quoted.\n";
  o << "set -u\n";
  // Environment first: the script's own variable names are reserved (validate_slurm_config).
  for (const EnvVar& v : slurm_env(s)) o << "export " << v.name << "=" << shell_quote(v.value) << "\n";
  o << "tessera=" << shell_quote(spec.tessera) << "\n";
  o << "launcher=" << shell_quote(s.launcher) << "\n";
  o << "max_restarts=" << s.max_restarts << "\n";

  const std::vector<std::string> modules = split_list(s.modules);
  if (!modules.empty()) {
    o << "if ! command -v module >/dev/null 2>&1 && [ -r /etc/profile.d/modules.sh ]; then\n"
      << "  . /etc/profile.d/modules.sh\n"
      << "fi\n";
    for (const std::string& m : modules) {
      o << "module load " << shell_quote(m) << " || { echo \"tessera job: module load \"" << shell_quote(m)
        << "\" failed\"; exit 1; }\n";
    }
  }

  if (!spec.array) {
    const JobTask& t = spec.tasks[0];
    o << "array_tag=''\n";
    o << "recipe=" << shell_quote(t.recipe_path) << "\n";
    o << "run_dir=" << shell_quote(t.run_dir) << "\n";
    o << "ntasks=" << t.ntasks << "\n";
    if (!t.recipe_yaml.empty()) {
      check_heredoc(t.recipe_yaml);
      // The pinned recipe: written on every start (same text), so restarts train what was submitted.
      o << "mkdir -p -- \"$(dirname -- \"$recipe\")\" || exit 1\n";
      o << "cat > \"$recipe.tmp\" <<'" << kRecipeEnd << "' || exit 1\n" << t.recipe_yaml;
      if (t.recipe_yaml.back() != '\n') o << "\n";
      o << kRecipeEnd << "\n";
      o << "mv -f -- \"$recipe.tmp\" \"$recipe\" || exit 1\n";
    }
  } else {
    o << "point=${SLURM_ARRAY_TASK_ID:?this script runs as a Slurm job array (sbatch --array)}\n";
    o << "array_tag=\" (array task $point)\"\n";
    o << "recipes=" << bash_array(spec.tasks, [](const JobTask& t) { return shell_quote(t.recipe_path); })
      << "\n";
    o << "run_dirs=" << bash_array(spec.tasks, [](const JobTask& t) { return shell_quote(t.run_dir); })
      << "\n";
    o << "ntasks_of=" << bash_array(spec.tasks, [](const JobTask& t) { return std::to_string(t.ntasks); })
      << "\n";
    o << "recipe=${recipes[$point]}\n";
    o << "run_dir=${run_dirs[$point]}\n";
    o << "ntasks=${ntasks_of[$point]}\n";
  }
  o << kBody;
  return o.str();
}

}  // namespace tessera::cluster
