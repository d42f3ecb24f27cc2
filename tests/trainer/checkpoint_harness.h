// The checkpoint tests' harness (one process; checkpoint_test.cc initialises MPI for the whole
// trainer_tests binary and makes Self()): a small recipe, a whole model with its ZeRO optimizer
// (values from a seed), and save/read helpers.
#pragma once

#include <mpi.h>

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "parallel/mpi_comm.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/slices.h"
#include "trainer/model.h"
#include "trainer/zero_optimizer.h"

namespace tessera::trainer::testing {

namespace fs = std::filesystem;

// This process's MPI world (one rank: the tests run without mpirun), for collective checkpoint
// I/O; made after MPI_Init and freed before MPI_Finalize by checkpoint_test.cc's environment.
inline std::unique_ptr<parallel::MpiComm>& SelfHolder() {
  static std::unique_ptr<parallel::MpiComm> self;
  return self;
}
inline parallel::Comm& Self() { return *SelfHolder(); }

inline Recipe SmallRecipe() {
  Recipe r;
  r.source = "test";
  r.data.path = "unused";
  r.model.vocab_size = 11;
  r.model.dim = 8;
  r.model.n_layers = 2;
  r.model.n_heads = 2;
  r.model.inter_dim = 12;
  r.model.moe_inter_dim = 4;
  r.model.n_experts = 4;
  r.model.top_k = 2;
  r.model.first_dense_layers = 1;
  return r;
}

// An empty (removed) directory under the test's temporary directory.
inline fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("tessera_ckpt_" + name);
  fs::remove_all(dir);
  return dir;
}

// A whole model with its (single-rank) ZeRO optimizer, parameters and moments filled with
// values derived from `seed`.
struct Trainee {
  explicit Trainee(const Recipe& r, uint64_t seed)
      : comms(parallel::FakeComm::create_world(1)),
        model(r.model, cpu),
        optimizer(r.optimizer, model.params(), *comms[0], *comms[0]),
        tensors(checkpoint_tensors(r.model)),
        slices(tensors, model.params(), optimizer) {
    model.params().init(seed, 0.1);
    for (size_t k = 0; k < optimizer.shards().size(); ++k) {
      std::span<float> m = optimizer.exp_avg(k), v = optimizer.exp_avg_sq(k);
      for (size_t i = 0; i < m.size(); ++i) {
        m[i] = 0.001f * static_cast<float>(i + seed);
        v[i] = 0.002f * static_cast<float>(i + k);
      }
    }
  }
  std::vector<std::unique_ptr<parallel::FakeComm>> comms;
  kernels::CpuBackend cpu;
  Model model;
  ZeroOptimizer optimizer;
  std::vector<CheckpointTensor> tensors;
  CheckpointSlices slices;
};

// The collective read of `step_dir` into `t` (its checksums checked).
inline CheckpointMeta ReadBack(Trainee& t, const std::string& step_dir) {
  return read_checkpoint(Self(), step_dir, t.tensors, t.slices.reads(), t.slices.owned());
}

// Saves `t` as the checkpoint of `step` under `dir` (meta derived from the step).
inline std::string Save(Trainee& t, const Recipe& r, const fs::path& dir, int64_t step,
                        int64_t keep_last = 3, CheckpointEnv& env = CheckpointEnv::Posix()) {
  return write_checkpoint(Self(), dir.string(), t.tensors, t.slices.owned(),
                          {step, step * 100, 1, 5, step, 1}, r, keep_last, env);
}

}  // namespace tessera::trainer::testing
