#include "trainer/hdf5_io.h"

#include <stdexcept>

#include "data/hdf5.h"

namespace tessera::trainer {

// The HDF5 build is not thread-safe and the loader's prefetch thread reads shards while we write
// checkpoints: every call below holds data::Hdf5Guard (which also mutes HDF5's stderr dump).
using data::Hdf5Guard;

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  const std::string reason = data::hdf5_error_text();
  throw std::runtime_error(path + ": " + what + (reason.empty() ? "" : " (" + reason + ")"));
}

std::vector<hsize_t> dims_of(const std::vector<int64_t>& shape) {
  return std::vector<hsize_t>(shape.begin(), shape.end());
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  Hdf5Guard guard;
  if (mode == Mode::kCreate) {
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  } else {
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  }
  if (file_ < 0) {
    fail(path, mode == Mode::kCreate ? "cannot create HDF5 file"
                                     : "cannot open HDF5 file (missing or not HDF5)");
  }
}

H5File::~H5File() {
  Hdf5Guard guard;
  if (file_ >= 0) H5Fclose(file_);
}

bool H5File::has(const std::string& name) const {
  Hdf5Guard guard;
  // H5Lexists fails if an intermediate group is missing, so walk the path.
  size_t pos = 0;
  while (true) {
    pos = name.find('/', pos + 1);
    const std::string prefix = name.substr(0, pos);
    if (H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

static void write_dataset(hid_t file, const std::string& path, const std::string& name,
                          const std::vector<int64_t>& shape, hid_t file_type, hid_t mem_type,
                          const void* data) {
  Hdf5Guard guard;
  const auto dims = dims_of(shape);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t ds = H5Dcreate2(file, name.c_str(), file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  herr_t st = ds < 0 ? -1 : H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(space);
  if (st < 0) fail(path, "cannot write dataset " + name);
}

void H5File::write_f32(const std::string& name, const std::vector<int64_t>& shape,
                       const float* data) {
  write_dataset(file_, path_, name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

void H5File::write_i32(const std::string& name, const std::vector<int64_t>& shape,
                       const int32_t* data) {
  write_dataset(file_, path_, name, shape, H5T_STD_I32LE, H5T_NATIVE_INT32, data);
}

std::vector<int64_t> H5File::shape_of(const std::string& name) const {
  Hdf5Guard guard;
  if (!has(name)) fail(path_, "missing dataset " + name);
  hid_t ds = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
  if (ds < 0) fail(path_, "cannot open dataset " + name);
  hid_t space = H5Dget_space(ds);
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  H5Dclose(ds);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void H5File::read_f32(const std::string& name, const std::vector<int64_t>& shape,
                      float* data) const {
  Hdf5Guard guard;
  const auto actual = shape_of(name);
  if (actual != shape) {
    fail(path_, "dataset " + name + " has shape " + shape_str(actual) + ", expected " +
                    shape_str(shape));
  }
  hid_t ds = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
  herr_t st = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose(ds);
  if (st < 0) fail(path_, "cannot read dataset " + name + " (truncated or corrupt file?)");
}

static void write_attr(hid_t file, const std::string& path, const std::string& name,
                       hid_t type, const void* value) {
  Hdf5Guard guard;
  if (H5Aexists(file, name.c_str()) > 0) H5Adelete(file, name.c_str());
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(file, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = attr < 0 ? -1 : H5Awrite(attr, type, value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  if (st < 0) fail(path, "cannot write attribute " + name);
}

void H5File::write_attr_i64(const std::string& name, int64_t value) {
  write_attr(file_, path_, name, H5T_NATIVE_INT64, &value);
}

void H5File::write_attr_f64(const std::string& name, double value) {
  write_attr(file_, path_, name, H5T_NATIVE_DOUBLE, &value);
}

int64_t H5File::read_attr_i64(const std::string& name) const {
  Hdf5Guard guard;
  if (H5Aexists(file_, name.c_str()) <= 0) fail(path_, "missing attribute " + name);
  hid_t attr = H5Aopen(file_, name.c_str(), H5P_DEFAULT);
  int64_t value = 0;
  herr_t st = H5Aread(attr, H5T_NATIVE_INT64, &value);
  H5Aclose(attr);
  if (st < 0) fail(path_, "cannot read attribute " + name);
  return value;
}

void H5File::flush() {
  Hdf5Guard guard;
  if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) fail(path_, "flush failed");
}

}  // namespace tessera::trainer
