#include "trainer/checkpoint/verify.h"

#include <filesystem>

#include "trainer/checkpoint/hdf5_io.h"
#include "trainer/checkpoint/meta.h"
#include "trainer/checkpoint/tensor_io.h"
#include "trainer/checkpoint/tensors.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

namespace fs = std::filesystem;

std::vector<std::string> verify_checkpoint(const std::string& step_dir, CheckpointEnv& env) {
  std::vector<std::string> problems;
  CheckpointInfo info;
  try {
    info = read_checkpoint_info(step_dir, env);
  } catch (const std::exception& e) {
    return {e.what()};
  }
  const std::string path = (fs::path(step_dir) / "model.h5").string();
  try {
    const Recipe recipe = parse_recipe(info.recipe_yaml, step_dir + "/trainer.yaml");
    H5File file(path, H5File::Mode::kReadOnly);
    try {
      check_same_step(file, info);
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
    std::vector<float> data;
    for (const CheckpointTensor& t : checkpoint_tensors(recipe.model)) {
      try {
        // The shape comes from trainer.yaml's recipe: check it against model.h5's before it sizes
        // the buffer (a damaged recipe could ask for terabytes).
        const std::vector<int64_t> stored = file.shape_of(t.name);
        if (stored != t.shape) {
          problems.push_back(t.name + ": " + path + " holds shape " + kernels::shape_string(stored) +
                             " but trainer.yaml's recipe gives " + kernels::shape_string(t.shape));
          continue;
        }
        data.resize(static_cast<size_t>(t.numel()));
        file.read_f32_slice(t.name, t.shape, 0, t.numel(), data.data());
        auto it = info.checksums.find(t.name);
        if (it == info.checksums.end()) {
          problems.push_back(t.name + ": no checksum in trainer.yaml");
        } else if (slice_checksum(0, data.data(), t.numel()) != it->second) {
          problems.push_back(t.name + ": checksum mismatch (" + path + ")");
        }
      } catch (const std::exception& e) {
        problems.push_back(t.name + ": " + e.what());
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(e.what());
  }
  return problems;
}

}  // namespace tessera::trainer
