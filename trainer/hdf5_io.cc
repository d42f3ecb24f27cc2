#include "trainer/hdf5_io.h"

#include <stdexcept>

#include "kernels/tensor.h"

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

}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  Hdf5Guard guard;
  file_ = mode == Mode::kCreate ? data::h5_create_file(path) : data::h5_open_file(path);
}

H5File::~H5File() {
  Hdf5Guard guard;  // the close is an HDF5 call too
  file_.reset();
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
  Hdf5Guard guard;
  const auto actual = shape_of(name);
  if (actual != shape) {
    fail(path_, "dataset " + name + " has shape " + kernels::shape_string(actual) +
                    ", expected " + kernels::shape_string(shape));
  }
  H5Id ds(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid() || H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail(path_, "cannot read dataset " + name + " (truncated or corrupt file?)");
  }
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
