// Checkpoint tensors over the HDF5 C API, built on data/hdf5.h's handles and lock: float32/int
// tensors as named datasets (intermediate groups created from '/' in names) and scalar
// attributes on the root.
// Every failure throws std::runtime_error naming the file and the dataset. Thread-safe with
// respect to the data loader: each call holds data::Hdf5Guard.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/hdf5.h"

namespace tessera::trainer {

class H5File {
 public:
  enum class Mode { kCreate, kReadOnly };
  H5File(const std::string& path, Mode mode);
  ~H5File();
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const;

  void write_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  void write_i32(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data);
  // REQUIRES the dataset's shape equal `shape` (error names both shapes otherwise).
  void read_f32(const std::string& name, const std::vector<int64_t>& shape, float* data) const;
  std::vector<int64_t> shape_of(const std::string& name) const;

  void write_attr_i64(const std::string& name, int64_t value);
  void write_attr_f64(const std::string& name, double value);
  int64_t read_attr_i64(const std::string& name) const;

  // Flushes HDF5's buffers to the OS (durability is the caller's fsync).
  void flush();

 private:
  std::string path_;
  data::H5Id file_;
};

}  // namespace tessera::trainer
