#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <optional>

#include "cluster/commands.h"
#include "cluster/job_script.h"
#include "cluster/process.h"
#include "cluster/sbatch.h"
#include "cluster/slurm_config.h"
#include "cluster/sweep.h"
#include "cluster/sweep_report.h"

namespace tessera::cluster {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

std::optional<int> parse(const std::string& usage, const std::vector<std::string>& args,
                         po::options_description& visible, const std::string& positional_name,
                         po::variables_map& vm) {
  po::options_description all;
  all.add(visible).add_options()(positional_name.c_str(), po::value<std::string>());
  po::positional_options_description positional;
  positional.add(positional_name.c_str(), 1);
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera " << usage << ": " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  if (!vm.count(positional_name)) {
    std::cerr << "tessera " << usage << ": missing " << positional_name << "\n" << visible << "\n";
    return 2;
  }
  return std::nullopt;
}

int run_report(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera sweep report DIR [--peak-gflops G] [--no-plots]\n\n"
      "Gathers every point of the sweep in DIR into DIR/report.csv (layout, world size, tokens/s,\n"
      "tokens/s per rank, scaling efficiency, MFU, bubble, exposed comm, peak memory, final loss)\n"
      "and draws DIR/throughput.png, DIR/scaling_efficiency.png and DIR/loss.png with gnuplot.\n"
      "Notes on empty columns go to DIR/report-notes.txt.\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("peak-gflops", po::value<double>(), "peak GFLOP/s of one rank (for the MFU column)")
      ("no-plots", "write the CSV only");
  po::variables_map vm;
  if (auto status = parse("sweep report", args, visible, "DIR", vm)) return *status;
  try {
    ReportOptions options;
    if (vm.count("peak-gflops")) options.peak_gflops_per_rank = vm["peak-gflops"].as<double>();
    options.plots = !vm.count("no-plots");
    const std::string dir = vm["DIR"].as<std::string>();
    for (const std::string& note : write_sweep_report(dir, options)) {
      std::cout << "note: " << note << "\n";
    }
    std::cout << "tessera sweep report: wrote " << dir << "/report.csv"
              << (options.plots ? " and throughput.png, scaling_efficiency.png, loss.png" : "")
              << "\n";
    return 0;
  } catch (const trainer::RecipeError& e) {
    std::cerr << "tessera sweep report: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tessera sweep report: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int run_sweep_command(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "report") return run_report({args.begin() + 1, args.end()});
  po::options_description visible(
      "Usage: tessera sweep SWEEP.yaml [--local] [--dry-run]\n"
      "       tessera sweep report DIR          (see tessera sweep report --help)\n\n"
      "Expands the grid of SWEEP.yaml into one recipe per point, DIR/points/<i>/recipe.yaml\n"
      "(run.dir DIR/points/<i>/run), and submits them as one Slurm job array (sbatch --array,\n"
      "'concurrency' tasks at once; the allocation, slurm.nodes * slurm.ntasks_per_node, must hold\n"
      "the largest point, whose processes are parallel.pp * parallel.dp). Each array task is a\n"
      "`tessera submit` job: it checkpoints and requeues on the warning signal or preemption.\n"
      "With --local the points run here one after another with mpirun. A sweep file:\n"
      "  base: recipes/bench-moe.yaml     dir: runs/sweeps/NAME     concurrency: 1\n"
      "  set:  {train.steps: 10}          zip:  {parallel.dp: [1, 2], train.global_batch: [8, 16]}\n"
      "  grid: {parallel.schedule: [1f1b, zb1p]}    (points: zip x grid, last key fastest)\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("local", "run the points here with mpirun, one after another")
      ("dry-run", "print the points and the job script (or mpirun commands); write nothing")
      ("mpirun", po::value<std::string>()->default_value("mpirun"), "launcher for --local")
      ("tessera", po::value<std::string>(), "tessera binary the points run (default: this one)");
  po::variables_map vm;
  if (auto status = parse("sweep", args, visible, "SWEEP", vm)) return *status;
  try {
    const SweepSpec spec = load_sweep(vm["SWEEP"].as<std::string>());
    const std::vector<SweepPoint> points = expand_sweep(spec);
    const bool dry = vm.count("dry-run") > 0;
    const std::string tessera = vm.count("tessera")
                                    ? fs::absolute(vm["tessera"].as<std::string>()).string()
                                    : this_executable();
    long long max_world = 1;
    for (const SweepPoint& p : points) {
      max_world = std::max(max_world, p.world);
      (dry ? std::cout : std::cerr) << "point " << p.index << ": " << p.world << " processes";
      for (const std::string& o : p.overrides) (dry ? std::cout : std::cerr) << " " << o;
      (dry ? std::cout : std::cerr) << "\n";
    }

    if (vm.count("local")) {
      if (!dry) write_sweep_points(spec, points);
      int failed = 0;
      for (const SweepPoint& p : points) {
        const std::vector<std::string> cmd = {vm["mpirun"].as<std::string>(), "-np",
                                              std::to_string(p.world), tessera, "train",
                                              p.recipe_path, "--resume", "auto"};
        std::string line;
        for (const std::string& c : cmd) line += (line.empty() ? "" : " ") + c;
        if (dry) {
          std::cout << line << "\n";
          continue;
        }
        if (fs::exists(fs::path(p.recipe.run.dir) / "DONE")) {
          std::cerr << "tessera sweep: point " << p.index << " is already done\n";
          continue;
        }
        std::cerr << "tessera sweep: point " << p.index << ": " << line << "\n";
        const ProcessResult r = run_process(cmd, false);
        if (r.status != 0) {
          std::cerr << "tessera sweep: point " << p.index << " failed (exit status " << r.status
                    << ")\n";
          ++failed;
        }
      }
      if (failed) {
        std::cerr << "tessera sweep: " << failed << " of " << points.size() << " points failed\n";
        return 1;
      }
      if (!dry) std::cerr << "tessera sweep: done; tessera sweep report " << spec.dir << "\n";
      return 0;
    }

    validate_slurm_config(points.front().recipe, max_world, /*exact_tasks=*/false);
    JobSpec job;
    job.slurm = points.front().recipe.slurm;
    job.source = spec.source;
    job.tessera = tessera;
    job.workdir = fs::current_path().string();
    job.output = spec.dir + "/points/%a/slurm-%A_%a.out";
    job.array = true;
    job.array_limit = spec.concurrency;
    for (const SweepPoint& p : points) {
      job.tasks.push_back({p.recipe_path, "", p.recipe.run.dir, p.world});
    }
    const std::string script = render_job_script(job);
    if (dry) {
      std::cout << script;
      return 0;
    }
    write_sweep_points(spec, points);
    const std::string id = sbatch_submit(script, spec.dir + "/job.sh");
    std::cerr << "tessera sweep: job array " << id << " (" << points.size() << " points, "
              << spec.dir << "/job.sh); afterwards: tessera sweep report " << spec.dir << "\n";
    std::cout << id << "\n";
    return 0;
  } catch (const SweepError& e) {
    std::cerr << "tessera sweep: " << e.what() << "\n";
    return 2;
  } catch (const trainer::RecipeError& e) {
    std::cerr << "tessera sweep: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "tessera sweep: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tessera sweep: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tessera::cluster
