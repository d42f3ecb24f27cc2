#include "trainer/checkpoint/hdf5_io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "kernels/tensor.h"
#include "parallel/mpi_comm.h"

namespace tessera::trainer {

// The HDF5 build is not thread-safe and the loader's prefetch thread reads shards while we write
// checkpoints: every call below holds data::Hdf5Guard (which also mutes HDF5's stderr dump).
// Handles are data::H5Id, so they close on every path, errors included.
using data::H5Id;
using data::Hdf5Guard;

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  const std::string reason = data::hdf5_error_text();
  throw std::runtime_error(path + ": " + what + (reason.empty() ? "" : " (" + reason + ")"));
}

void write_dataset(hid_t file, const std::string& path, const std::string& name,
                   const std::vector<int64_t>& shape, hid_t file_type, hid_t mem_type,
                   const void* data) {
  Hdf5Guard guard;
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!space.valid() || !lcpl.valid() || H5Pset_create_intermediate_group(lcpl.get(), 1) < 0) {
    fail(path, "cannot prepare dataset " + name);
  }
  H5Id ds(H5Dcreate2(file, name.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT,
                     H5P_DEFAULT),
          H5Dclose);
  if (!ds.valid() || H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail(path, "cannot write dataset " + name);
  }
}

void write_attr(hid_t file, const std::string& path, const std::string& name, hid_t type,
                const void* value) {
  Hdf5Guard guard;
  if (H5Aexists(file, name.c_str()) > 0) H5Adelete(file, name.c_str());
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id attr(H5Acreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
            H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), type, value) < 0) {
    fail(path, "cannot write attribute " + name);
  }
}

// Adds elements [begin, end) (row-major, relative to the sub-array at `prefix`) of an array with
// dims[depth..] to the selection of `space`, as hyperslabs: whole rows in one block, partial
// rows by recursion into the next dimension.
void select_flat(hid_t space, const std::vector<hsize_t>& dims, std::vector<hsize_t>& prefix,
                 hsize_t begin, hsize_t end) {
  const size_t depth = prefix.size();
  if (begin >= end) return;
  const size_t n = dims.size();
  std::vector<hsize_t> start(n, 0), count(n, 1);
  for (size_t d = 0; d < depth; ++d) start[d] = prefix[d];
  if (depth + 1 == n) {
    start[depth] = begin;
    count[depth] = end - begin;
    H5Sselect_hyperslab(space, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr);
    return;
  }
  hsize_t row = 1;  // elements per index of dimension `depth`
  for (size_t d = depth + 1; d < n; ++d) row *= dims[d];
  const hsize_t first_full = (begin + row - 1) / row, end_full = end / row;
  auto partial = [&](hsize_t r, hsize_t b, hsize_t e) {
    prefix.push_back(r);
    select_flat(space, dims, prefix, b, e);
    prefix.pop_back();
  };
  if (first_full > end_full) {  // inside one row
    partial(begin / row, begin % row, end % row == 0 ? row : end % row);
    return;
  }
  if (begin % row != 0) partial(begin / row, begin % row, row);
  if (end_full > first_full) {
    start[depth] = first_full;
    count[depth] = end_full - first_full;
    for (size_t d = depth + 1; d < n; ++d) count[d] = dims[d];
    H5Sselect_hyperslab(space, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr);
  }
  if (end % row != 0) partial(end_full, 0, end % row);
}

// The file dataspace of `ds` with elements [begin, end) selected, checked against its size.
H5Id flat_selection(hid_t ds, int64_t begin, int64_t end, const std::string& path,
                    const std::string& name) {
  H5Id space(H5Dget_space(ds), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) fail(path, "cannot read the shape of dataset " + name);
  std::vector<hsize_t> dims(std::max(rank, 1), 1);
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  hsize_t total = 1;
  for (hsize_t d : dims) total *= d;
  if (begin < 0 || end < begin || static_cast<hsize_t>(end) > total) {
    fail(path, "slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                   ") is outside dataset " + name + " of " + std::to_string(total) + " elements");
  }
  H5Sselect_none(space.get());
  std::vector<hsize_t> prefix;
  if (rank == 0) {
    H5Sselect_all(space.get());
  } else {
    select_flat(space.get(), dims, prefix, static_cast<hsize_t>(begin), static_cast<hsize_t>(end));
  }
  return space;
}

}  // namespace

H5File::H5File(const std::string& path, parallel::Comm& comm) : path_(path) {
  Hdf5Guard guard;
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid() ||
      H5Pset_fapl_mpio(fapl.get(), parallel::mpi_handle(comm, "a checkpoint"), MPI_INFO_NULL) < 0) {
    fail(path, "cannot set up parallel (MPI-IO) access");
  }
  file_ = H5Id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file_.valid()) fail(path, "cannot create the file for parallel writing");
}

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  Hdf5Guard guard;
  file_ = mode == Mode::kCreate ? data::h5_create_file(path) : data::h5_open_file(path);
}

H5File::~H5File() {
  Hdf5Guard guard;  // the close is an HDF5 call too
  created_.clear();
  file_.reset();
}

void H5File::create_f32(const std::string& name, const std::vector<int64_t>& shape) {
  Hdf5Guard guard;
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!space.valid() || !lcpl.valid() || !dcpl.valid() ||
      H5Pset_create_intermediate_group(lcpl.get(), 1) < 0 ||
      H5Pset_obj_track_times(dcpl.get(), false) < 0 ||
      H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0) {
    fail(path_, "cannot prepare dataset " + name);
  }
  H5Id ds(H5Dcreate2(file_.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(),
                     dcpl.get(), H5P_DEFAULT),
          H5Dclose);
  if (!ds.valid()) fail(path_, "cannot create dataset " + name);
  created_[name] = std::move(ds);
}

void H5File::write_f32_slice(const std::string& name, int64_t begin, int64_t end,
                             const float* data) {
  Hdf5Guard guard;
  auto it = created_.find(name);
  if (it == created_.end()) fail(path_, "dataset " + name + " was not created");
  if (begin == end) return;
  H5Id file_space = flat_selection(it->second.get(), begin, end, path_, name);
  const hsize_t n = static_cast<hsize_t>(end - begin);
  H5Id mem_space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  errno = 0;
  if (!mem_space.valid() || H5Dwrite(it->second.get(), H5T_NATIVE_FLOAT, mem_space.get(),
                                     file_space.get(), H5P_DEFAULT, data) < 0) {
    // HDF5's error stack says only "file write failed"; the system's reason (a full disk: "No
    // space left on device") is in errno, which the failed write(2) under MPI-IO left behind.
    const int err = errno;
    fail(path_, "cannot write elements [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") of dataset " + name + (err != 0 ? ": " + std::string(std::strerror(err)) : ""));
  }
}

void H5File::read_f32_slice(const std::string& name, const std::vector<int64_t>& shape,
                            int64_t begin, int64_t end, float* data) const {
  Hdf5Guard guard;
  const auto actual = shape_of(name);
  if (actual != shape) {
    fail(path_, "dataset " + name + " has shape " + kernels::shape_string(actual) +
                    ", expected " + kernels::shape_string(shape));
  }
  if (begin == end) return;
  H5Id ds(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail(path_, "cannot open dataset " + name);
  H5Id file_space = flat_selection(ds.get(), begin, end, path_, name);
  const hsize_t n = static_cast<hsize_t>(end - begin);
  H5Id mem_space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (!mem_space.valid() || H5Dread(ds.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(),
                                    H5P_DEFAULT, data) < 0) {
    fail(path_, "cannot read dataset " + name + " (truncated or corrupt file?)");
  }
}

void H5File::abandon() {
  for (auto& [name, ds] : created_) ds.release();
  created_.clear();
  file_.release();
}

void H5File::close() {
  Hdf5Guard guard;
  for (auto& [name, ds] : created_) {
    if (!ds.close()) fail(path_, "cannot close dataset " + name);
  }
  created_.clear();
  if (!file_.close()) fail(path_, "cannot close the file (data may not have been written)");
}

bool H5File::has(const std::string& name) const {
  Hdf5Guard guard;
  // H5Lexists fails if an intermediate group is missing, so walk the path.
  size_t pos = 0;
  while (true) {
    pos = name.find('/', pos + 1);
    const std::string prefix = name.substr(0, pos);
    if (H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

void H5File::write_f32(const std::string& name, const std::vector<int64_t>& shape,
                       const float* data) {
  write_dataset(file_.get(), path_, name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

void H5File::write_i32(const std::string& name, const std::vector<int64_t>& shape,
                       const int32_t* data) {
  write_dataset(file_.get(), path_, name, shape, H5T_STD_I32LE, H5T_NATIVE_INT32, data);
}

std::vector<int64_t> H5File::shape_of(const std::string& name) const {
  Hdf5Guard guard;
  if (!has(name)) fail(path_, "missing dataset " + name);
  H5Id ds(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail(path_, "cannot open dataset " + name);
  H5Id space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) fail(path_, "cannot read the shape of dataset " + name);
  std::vector<hsize_t> dims(rank);
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void H5File::read_f32(const std::string& name, const std::vector<int64_t>& shape,
                      float* data) const {
  read_f32_slice(name, shape, 0, kernels::shape_numel(shape), data);
}

void H5File::write_attr_i64(const std::string& name, int64_t value) {
  write_attr(file_.get(), path_, name, H5T_NATIVE_INT64, &value);
}

void H5File::write_attr_f64(const std::string& name, double value) {
  write_attr(file_.get(), path_, name, H5T_NATIVE_DOUBLE, &value);
}

int64_t H5File::read_attr_i64(const std::string& name) const {
  Hdf5Guard guard;
  if (H5Aexists(file_.get(), name.c_str()) <= 0) fail(path_, "missing attribute " + name);
  H5Id attr(H5Aopen(file_.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  int64_t value = 0;
  if (!attr.valid() || H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    fail(path_, "cannot read attribute " + name);
  }
  return value;
}

void H5File::flush() {
  Hdf5Guard guard;
  if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) fail(path_, "flush failed");
}

}  // namespace tessera::trainer
