// checkpoint_bench: checkpoint save and load throughput against the disk's sequential write
// speed, measured in the same run on the same directory.
//
// Usage: mpirun -np N checkpoint_bench RECIPE [--set k=v]... [--dir DIR] [--repeats 3]
//   (parallel.pp x parallel.dp must equal N, as for `tessera train`)
//
// Every rank builds its part of RECIPE's model and ZeRO-1 optimizer exactly as training does,
// then: save = the collective parallel-HDF5 write of a whole checkpoint (values and AdamW
// moments, every rank its own slices, fsync and rename included), load = every rank reading its
// slices back with checksum verification. Disk = rank 0 writing as many bytes to one file with
// write() + fsync. Throughputs are checkpoint bytes / time (the median of --repeats).
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/mpi_comm.h"
#include "parallel/mpi_env.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/model.h"
#include "trainer/parallel_layout.h"
#include "trainer/zero_optimizer.h"

namespace {

using namespace tessera;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds to write `bytes` to a fresh file and fsync it.
double disk_write_seconds(const fs::path& path, int64_t bytes) {
  std::vector<char> block(8 << 20, 1);
  const auto t0 = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error(path.string() + ": cannot create");
  for (int64_t left = bytes; left > 0;) {
    const ssize_t n = ::write(fd, block.data(), static_cast<size_t>(std::min<int64_t>(left, block.size())));
    if (n <= 0) throw std::runtime_error(path.string() + ": write failed");
    left -= n;
  }
  ::fsync(fd);
  ::close(fd);
  const double s = seconds_since(t0);
  fs::remove(path);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiEnv mpi(&argc, &argv);
  std::vector<std::string> overrides;
  std::string recipe_path, dir = "runs/checkpoint-bench";
  int repeats = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--set" && i + 1 < argc) overrides.push_back(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else recipe_path = a;
  }
  auto world = parallel::MpiComm::world();
  const bool root = world->rank() == 0;
  if (recipe_path.empty()) {
    if (root) std::fprintf(stderr, "usage: mpirun -np N checkpoint_bench RECIPE [--set k=v]... [--dir DIR]\n");
    return 2;
  }
  try {
    const trainer::Recipe recipe = trainer::load_recipe(recipe_path, overrides);
    trainer::ParallelLayout layout = trainer::make_parallel_layout(recipe, *world);
    kernels::CpuBackend cpu;
    trainer::Model model(recipe.model, cpu, layout.part, layout.ep.get(), layout.dp->size(),
                         layout.expert_dp->size());
    model.params().init(recipe.train.seed, recipe.model.init_std);
    trainer::ZeroOptimizer optimizer(recipe.optimizer, model.params(), *layout.dp, *layout.expert_dp);
    const auto tensors = trainer::checkpoint_tensors(recipe.model);
    const trainer::CheckpointSlices slices(tensors, model.params(), optimizer);
    int64_t bytes = 0;
    for (const auto& t : tensors) bytes += t.numel() * 4;
    if (root) fs::remove_all(dir);  // a fresh directory: step numbers restart at 1
    world->barrier().wait();
    std::vector<double> save, load, disk;
    for (int r = 0; r < repeats; ++r) {
      world->barrier().wait();
      auto t0 = Clock::now();
      const std::string step_dir = trainer::write_checkpoint(
          *world, dir, tensors, slices.owned(), {r + 1, 0, 0, 0, 0, world->size()}, recipe, 1);
      save.push_back(seconds_since(t0));
      world->barrier().wait();
      t0 = Clock::now();
      trainer::read_checkpoint(*world, step_dir, tensors, slices.reads(), slices.owned());
      world->barrier().wait();
      load.push_back(seconds_since(t0));
      if (root) disk.push_back(disk_write_seconds(fs::path(dir) / "disk-probe.bin", bytes));
      world->barrier().wait();
    }
    if (root) {
      const double gb = bytes / 1e9;
      const double disk_gbs = gb / median(disk);
      std::printf("checkpoint_bench: %s, %d process(es) (%s), checkpoint %.1f MB, %s\n",
                  recipe_path.c_str(), world->size(), layout.grid.describe().c_str(), gb * 1e3,
                  dir.c_str());
      std::printf("  disk sequential write + fsync: %.3f GB/s\n", disk_gbs);
      std::printf("  save: %.3f s = %.3f GB/s (%.0f%% of the disk)\n", median(save),
                  gb / median(save), 100 * gb / median(save) / disk_gbs);
      std::printf("  load: %.3f s = %.3f GB/s (read + checksum verification)\n", median(load),
                  gb / median(load));
      std::printf("{\"bytes\":%lld,\"ranks\":%d,\"disk_gbs\":%.4f,\"save_gbs\":%.4f,"
                  "\"load_gbs\":%.4f,\"save_over_disk\":%.4f}\n",
                  static_cast<long long>(bytes), world->size(), disk_gbs, gb / median(save),
                  gb / median(load), gb / median(save) / disk_gbs);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_bench: error: %s\n", e.what());
    if (world->size() > 1) parallel::abort_all(std::string("checkpoint_bench: ") + e.what(), 1);
    return 1;
  }
  return 0;
}
