// tessera: trains DeepSeek-V3-style MoE transformers. `tessera --help` lists the commands.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cluster/commands.h"
#include "cluster/train_cluster_option.h"
#include "kernels/host_memory.h"
#include "parallel/mpi_env.h"
#include "trainer/commands.h"
#include "trainer/prepare_command.h"
#include "trainer/stop_signal.h"

namespace {

constexpr const char* kUsage =
    "Usage: tessera <command> [options]\n\n"
    "Commands:\n"
    "  train RECIPE [--set k=v]...            train a model from a YAML recipe\n"
    "  eval RECIPE --checkpoint DIR --data DIR  validation loss of a checkpoint\n"
    "  checkpoint verify|info DIR             check a checkpoint's checksums, or describe and check it\n"
    "  checkpoint export|import ...           to and from Hugging Face DeepSeek-V3 checkpoints\n"
    "  prepare text|synthetic ...             write an HDF5 token dataset\n"
    "  submit RECIPE [--set k=v]... [--dry-run]  train RECIPE as a Slurm job (sbatch)\n"
    "  sweep SWEEP.yaml [--local] [--dry-run]    a grid of recipes as a Slurm job array\n"
    "  sweep report DIR                       a sweep's results as CSV and PNG plots\n"
    "  trace plot RUN_DIR [--out FILE.png]    a PNG timeline of a run's traced steps\n"
    "  plan RECIPE --cluster FILE [--search]  predict step time, MFU, memory of a layout (or\n"
    "                                         rank the layouts that fit) without running it\n"
    "  plan calibrate RECIPE... --out FILE    measure this machine (under mpirun, >= 2 ranks)\n"
    "                                         into a cluster description for the planner\n\n"
    "Run `tessera <command> --help` for a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace tessera::trainer;
  tessera::kernels::keep_freed_host_memory();
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "train") {
    // MPI for the training processes (a singleton without mpirun). MpiEnv outlives every
    // communicator the command creates.
    // Stop signals wait for the training loop's own thread (trainer/stop_signal.h): blocked
    // before MPI starts any thread, so no thread is interrupted by them.
    tessera::trainer::block_stop_signals();
    try {
      tessera::parallel::MpiEnv mpi(&argc, &argv);
      std::vector<std::string> train_args;
      try {  // --cluster FILE: every rank reads the same files and fails alike; rank 0 says why
        train_args = tessera::cluster::resolve_train_cluster(args);
      } catch (const std::exception& e) {
        if (mpi.world_rank() == 0) std::cerr << "tessera train: --cluster: " << e.what() << "\n";
        return 2;
      }
      return run_train_command(train_args);
    } catch (const std::exception& e) {
      std::cerr << "tessera train: error: " << e.what() << "\n";
      return 1;
    }
  }
  if (command == "plan") {
    // Calibration measures the network between the ranks: MPI, as for train.
    try {
      tessera::parallel::MpiEnv mpi(&argc, &argv);
      return tessera::cluster::run_plan_command(args);
    } catch (const std::exception& e) {
      std::cerr << "tessera plan: error: " << e.what() << "\n";
      return 1;
    }
  }
  if (command == "eval") return run_eval_command(args);
  if (command == "checkpoint") return run_checkpoint_command(args);
  if (command == "prepare") return run_prepare_command(args);
  if (command == "submit") return tessera::cluster::run_submit_command(args);
  if (command == "sweep") return tessera::cluster::run_sweep_command(args);
  if (command == "trace") return tessera::cluster::run_trace_command(args);
  std::cerr << "tessera: unknown command '" << command << "'\n\n" << kUsage;
  return 2;
}
