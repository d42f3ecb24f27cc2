// Checkpoint tensors over the HDF5 C API, built on data/hdf5.h's handles and lock: float32/int
// tensors as named datasets (intermediate groups created from '/' in names) and scalar
// attributes on the root.
//
// Parallel mode (the Comm constructor; an MpiComm, whose communicator MPI-IO uses): the file is
// created collectively through MPI-IO; every rank creates every dataset (create_f32, collective: same names, shapes and order on all
// ranks) and then writes only its own elements (write_f32_slice, independent). A slice is a
// contiguous range of a tensor's elements in row-major order, which is what a rank holds of a
// global tensor (a ZeRO-1 shard, or rows of a stacked expert tensor); it is selected in the file
// as a union of hyperslabs. Datasets are contiguous, without modification times, so the same
// data written in the same order gives the same bytes.
// Every failure throws std::runtime_error naming the file and the dataset. Thread-safe with
// respect to the data loader: each call holds data::Hdf5Guard.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/hdf5.h"
#include "parallel/comm.h"

namespace tessera::trainer {

class H5File {
 public:
  enum class Mode { kCreate, kReadOnly };
  H5File(const std::string& path, Mode mode);
  // Parallel create (truncates). Collective over comm; std::logic_error if it is no MpiComm.
  H5File(const std::string& path, parallel::Comm& comm);
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

  // An empty float32 dataset (collective in parallel mode), kept open for write_f32_slice.
  void create_f32(const std::string& name, const std::vector<int64_t>& shape);
  // Elements [begin, end) (row-major) of a dataset made by create_f32, from `data`.
  void write_f32_slice(const std::string& name, int64_t begin, int64_t end, const float* data);
  // Elements [begin, end) of a float32 dataset into `data`; the dataset must have `shape`.
  void read_f32_slice(const std::string& name, const std::vector<int64_t>& shape, int64_t begin,
                      int64_t end, float* data) const;
  // Closes every dataset and the file (collective in parallel mode); throws if HDF5 fails,
  // which is where buffered data reaches the file.
  void close();
  // Gives the file up without the collective close: after a write failed on some rank, HDF5's
  // close diverges between ranks (a metadata flush fails on one only) and waits forever. The
  // library keeps the file open; the caller ends the process (the error aborts the job).
  void abandon();

  void write_attr_i64(const std::string& name, int64_t value);
  void write_attr_f64(const std::string& name, double value);
  int64_t read_attr_i64(const std::string& name) const;

  // Flushes HDF5's buffers to the OS (durability is the caller's fsync).
  void flush();

 private:
  std::string path_;
  data::H5Id file_;
  std::map<std::string, data::H5Id> created_;  // datasets of create_f32, open until close()
};

}  // namespace tessera::trainer
