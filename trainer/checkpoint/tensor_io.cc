#include "trainer/checkpoint/tensor_io.h"

#include <filesystem>
#include <stdexcept>

#include "trainer/checkpoint/agreement.h"

namespace tessera::trainer {

namespace fs = std::filesystem;

std::vector<uint64_t> write_model_h5(parallel::Comm& comm, const std::string& path,
                                     const std::vector<CheckpointTensor>& tensors,
                                     const std::vector<TensorSlice>& owned, int64_t step,
                                     CheckpointEnv& env) {
  std::vector<uint64_t> checksums(tensors.size(), 0);
  {
    H5File file(path, comm);
    for (const CheckpointTensor& t : tensors) file.create_f32(t.name, t.shape);
    file.write_attr_i64("step", step);
    file.write_attr_i64("format_version", kCheckpointFormatVersion);
    env.Reached(SavePoint::kCreated, step);
    // A full disk fails the writes on some ranks only. The ranks compare outcomes before the
    // collective close: after a failed write HDF5's close diverges between ranks (rank 0 waits in
    // a barrier, the others in a broadcast, forever), so on any failure no rank closes: every
    // rank gives the file up and throws, and the error ends the job (directory.cc removes the
    // partial directory first). A rank that threw from a write used to skip the collectives after
    // it.
    std::string write_error;
    try {
      for (const TensorSlice& s : owned) {
        file.write_f32_slice(tensors.at(s.tensor).name, s.begin, s.end, s.data);
        checksums[s.tensor] += slice_checksum(s.begin, s.data, s.end - s.begin);
      }
      env.Reached(SavePoint::kWritten, step);
    } catch (const std::exception& e) {
      write_error = e.what();
    }
    if (!all_ranks_ok(comm, write_error.empty())) {
      file.abandon();
      throw CheckpointWriteFailed(write_error.empty()
                                      ? "writing " + path + " failed on another rank (see its log)"
                                      : write_error);
    }
    std::string close_error;
    try {
      file.close();
    } catch (const std::exception& e) {
      close_error = e.what();
    }
    agree<CheckpointSaveFailed>(comm, close_error.empty(), "closing " + path, close_error);
  }
  sum_checksums(comm, checksums);
  return checksums;
}

// model.h5's step attribute against trainer.yaml's: two files of one save agree.
void check_same_step(const H5File& file, const CheckpointInfo& info) {
  const int64_t step = file.read_attr_i64("step");
  if (step != info.meta.step) {
    throw CheckpointDamaged(file.path() + " is of step " + std::to_string(step) +
                            " but trainer.yaml says step " + std::to_string(info.meta.step));
  }
}

CheckpointMeta read_checkpoint(parallel::Comm& comm, const std::string& step_dir,
                               const std::vector<CheckpointTensor>& tensors,
                               const std::vector<TensorSlice>& reads,
                               const std::vector<TensorSlice>& owned, CheckpointEnv& env) {
  const std::string path = (fs::path(step_dir) / "model.h5").string();
  CheckpointInfo info;
  std::string error;
  bool damaged = false;
  try {
    info = read_checkpoint_info(step_dir, env);
    H5File file(path, H5File::Mode::kReadOnly);
    check_same_step(file, info);
    // Every rank checks every tensor's shape (metadata only), so a different model is reported
    // identically everywhere and never mistaken for damage.
    for (const CheckpointTensor& t : tensors) {
      if (!file.has(t.name)) throw CheckpointDamaged(path + ": missing dataset " + t.name);
      const std::vector<int64_t> shape = file.shape_of(t.name);
      if (shape != t.shape) {
        error = path + ": dataset " + t.name + " has shape " + kernels::shape_string(shape) +
                " but the model's is " + kernels::shape_string(t.shape) +
                " (the recipe's model differs from the checkpoint's)";
        break;
      }
    }
    if (error.empty()) {
      for (const TensorSlice& s : reads) {
        const CheckpointTensor& t = tensors.at(s.tensor);
        file.read_f32_slice(t.name, t.shape, s.begin, s.end, s.data);
      }
    }
  } catch (const std::exception& e) {
    damaged = true;
    error = e.what();
  }
  if (!damaged && !error.empty()) throw std::runtime_error(error);  // same on every rank
  agree<CheckpointDamaged>(comm, !damaged, "reading " + path, error);

  std::vector<uint64_t> sums(tensors.size(), 0);
  for (const TensorSlice& s : owned) sums[s.tensor] += slice_checksum(s.begin, s.data, s.end - s.begin);
  sum_checksums(comm, sums);
  std::string bad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto it = info.checksums.find(tensors[i].name);
    if (it == info.checksums.end() || it->second != sums[i]) {
      bad += (bad.empty() ? "" : ", ") + tensors[i].name;
    }
  }
  if (!bad.empty()) throw CheckpointDamaged(path + ": checksum mismatch in " + bad);
  return info.meta;
}

int64_t load_checkpoint(const std::string& step_dir, ParamTable& params, CheckpointEnv& env) {
  const CheckpointInfo info = read_checkpoint_info(step_dir, env);
  H5File file((fs::path(step_dir) / "model.h5").string(), H5File::Mode::kReadOnly);
  check_same_step(file, info);
  // HDF5 reads into host memory: a device's values go through a host copy. Every parameter here
  // is a whole tensor (one process), so its checksum is trainer.yaml's.
  std::string bad;
  params.update_values_on_host([&](float* values) {
    for (const ParamDesc& d : params.descs()) {
      file.read_f32(d.name, d.shape, values + d.offset);
      const auto it = info.checksums.find(d.name);
      if (it == info.checksums.end() ||
          slice_checksum(0, values + d.offset, d.numel()) != it->second) {
        bad += (bad.empty() ? "" : ", ") + d.name;
      }
    }
  });
  if (!bad.empty()) throw CheckpointDamaged(file.path() + ": checksum mismatch in " + bad);
  return info.meta.step;
}

}  // namespace tessera::trainer
