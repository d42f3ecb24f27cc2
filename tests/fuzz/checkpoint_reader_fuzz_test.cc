// Fuzzes the checkpoint readers (read_checkpoint_info, verify_checkpoint, load_checkpoint): a small
// checkpoint written by write_checkpoint has model.h5 (byte mutations) or trainer.yaml (text
// mutations; half of them re-sealed with a fresh content_checksum, so the YAML reading behind the
// checksum is reached too) mutated. Every case must load or throw an exception naming the step
// directory, and verify_checkpoint must return (a list of problems), never throw or crash.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "data/xxhash64.h"
#include "kernels/cpu_backend.h"
#include "parallel/mpi_comm.h"
#include "tests/fuzz/fuzz_case.h"
#include "tests/fuzz/mutator.h"
#include "tests/trainer/checkpoint_harness.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/model.h"

namespace tessera::fuzz {
namespace {

namespace fs = std::filesystem;

const int kMutations = mutation_count(300);

trainer::Recipe small_recipe() { return trainer::testing::SmallRecipe(); }

// Writes step 5 of small_recipe() under `checkpoints`. In a child process: write_checkpoint needs
// MPI (parallel HDF5), and the parent stays without MPI so that its fuzz children may fork freely.
void write_small_checkpoint(const std::string& checkpoints) {
  const CaseResult r = run_case([&] {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    auto self = std::make_optional(parallel::MpiComm::world());  // freed before MPI_Finalize
    const trainer::Recipe recipe = small_recipe();
    const std::vector<trainer::CheckpointTensor> tensors = trainer::checkpoint_tensors(recipe.model);
    std::vector<std::vector<float>> values(tensors.size());
    std::vector<trainer::TensorSlice> owned;
    for (size_t t = 0; t < tensors.size(); ++t) {
      values[t].resize(static_cast<size_t>(tensors[t].numel()));
      for (size_t i = 0; i < values[t].size(); ++i)
        values[t][i] = 0.01f * static_cast<float>(i + t);
      owned.push_back({static_cast<int>(t), 0, tensors[t].numel(), values[t].data()});
    }
    trainer::CheckpointMeta meta;
    meta.step = 5;
    meta.tokens_seen = 640;
    meta.optimizer_step = 5;
    meta.loader_cursor = 3;
    trainer::write_checkpoint(**self, checkpoints, tensors, owned, meta, recipe, 1);
    self.reset();
    MPI_Finalize();
  });
  ASSERT_EQ(r.kind, CaseResult::Kind::kLoaded) << r.detail;
}

// trainer.yaml with its last line (content_checksum) recomputed over the rest.
std::string resealed(const std::string& text) {
  const size_t at = text.rfind("content_checksum:");
  const std::string body = at == std::string::npos ? text : text.substr(0, at);
  const std::string sealed_body = body.empty() || body.back() == '\n' ? body : body + "\n";
  return sealed_body + "content_checksum: " +
         data::format_checksum(data::xxh64(sealed_body.data(), sealed_body.size())) + "\n";
}

// What resuming and evaluating read. Throws what load_checkpoint throws; verify_checkpoint's
// problems must each be a non-empty line.
void read_everything(const std::string& step_dir) {
  for (const std::string& problem : trainer::verify_checkpoint(step_dir)) {
    if (problem.empty()) throw std::logic_error("verify_checkpoint reported an empty problem");
  }
  trainer::read_checkpoint_info(step_dir);
  kernels::CpuBackend cpu;
  trainer::Model model(small_recipe().model, cpu);
  trainer::load_checkpoint(step_dir, model.params());
}

TEST(CheckpointReaderFuzz, EveryMutationLoadsOrThrowsNamingTheCheckpoint) {
  const fs::path root = fs::path(::testing::TempDir()) / "tessera-fuzz-checkpoint";
  fs::remove_all(root);
  write_small_checkpoint((root / "written").string());
  const fs::path base = root / "written" / trainer::checkpoint_name(5);
  {
    const CaseResult unmutated = run_case([&] {
      if (!trainer::verify_checkpoint(base.string()).empty()) throw std::logic_error("unsound");
      read_everything(base.string());
    });
    ASSERT_EQ(unmutated.kind, CaseResult::Kind::kLoaded) << unmutated.detail;
    const std::string yaml = read_bytes(base / "trainer.yaml");
    ASSERT_EQ(resealed(yaml), yaml);  // resealing an intact file changes nothing
  }

  int loaded = 0, threw = 0;
  const fs::path dir = root / "case";
  for (int seed = 0; seed < kMutations; ++seed) {
    Mutator mutator(static_cast<uint64_t>(seed));
    fs::remove_all(dir);
    fs::copy(base, dir);
    std::string what;
    if (seed % 2 == 0) {
      what = "model.h5: ";
      write_bytes(dir / "model.h5", mutator.mutate_binary(read_bytes(dir / "model.h5"), &what));
    } else {
      what = "trainer.yaml: ";
      std::string text = mutator.mutate_text(read_bytes(dir / "trainer.yaml"), &what);
      if (seed % 4 == 1) {
        text = resealed(text);
        what += "resealed; ";
      }
      write_bytes(dir / "trainer.yaml", text);
    }
    const CaseResult r = run_case([&] { read_everything(dir.string()); });
    if (r.kind == CaseResult::Kind::kLoaded) {
      ++loaded;
    } else if (r.kind == CaseResult::Kind::kThrew && r.detail.find(dir.string()) != std::string::npos) {
      ++threw;
    } else {
      ADD_FAILURE() << "seed " << seed << " (" << what << "): "
                    << (r.kind == CaseResult::Kind::kThrew ? "message does not name the checkpoint: " : "")
                    << r.detail;
    }
  }
  EXPECT_GT(loaded, 0);
  EXPECT_GT(threw, kMutations / 4);

  // Found by reading, not by the fuzzer (its vocab_size mutations are refused by the recipe check
  // first): a recipe in a re-sealed trainer.yaml with a huge vocabulary made verify_checkpoint
  // allocate the shape it asks for before comparing it with model.h5's.
  fs::remove_all(dir);
  fs::copy(base, dir);
  const std::string yaml = read_bytes(dir / "trainer.yaml");
  const size_t at = yaml.find("vocab_size: 11");
  ASSERT_NE(at, std::string::npos);
  write_bytes(dir / "trainer.yaml", resealed(yaml.substr(0, at) + "vocab_size: 2000000000" +
                                             yaml.substr(at + std::string("vocab_size: 11").size())));
  const CaseResult huge = run_case([&] {
    const std::vector<std::string> problems = trainer::verify_checkpoint(dir.string());
    for (const std::string& p : problems) {
      if (p.find("bad_alloc") != std::string::npos) throw std::runtime_error(p);
    }
    if (problems.empty() || problems[0].find("trainer.yaml's recipe gives") == std::string::npos) {
      throw std::runtime_error("expected a shape problem, got " +
                               (problems.empty() ? std::string("none") : problems[0]));
    }
  });
  EXPECT_EQ(huge.kind, CaseResult::Kind::kLoaded) << huge.detail;

  std::cout << "checkpoint reader: " << loaded << " loaded, " << threw << " refused of "
            << kMutations << " mutations\n";
  fs::remove_all(root);
}

}  // namespace
}  // namespace tessera::fuzz
