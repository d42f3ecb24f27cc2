#include "data/hdf5.h"

#include <string>
#include <utility>

#include "data/data_error.h"

namespace tessera::data {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

Hdf5Guard::Hdf5Guard() : lock_(hdf5_mutex()) {
  H5Eget_auto2(H5E_DEFAULT, &saved_func_, &saved_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Hdf5Guard::~Hdf5Guard() { H5Eset_auto2(H5E_DEFAULT, saved_func_, saved_data_); }

namespace {

herr_t collect_innermost(unsigned, const H5E_error2_t* error, void* client) {
  auto* text = static_cast<std::string*>(client);
  if (error->desc != nullptr && error->desc[0] != '\0') *text = error->desc;
  return 0;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  const std::string reason = hdf5_error_text();
  throw DataError(path + ": " + what + (reason.empty() ? "" : " (" + reason + ")"));
}

}  // namespace

std::string hdf5_error_text() {
  std::string text;
  // Walking downward visits the API call first and the innermost cause last.
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_innermost, &text);
  return text;
}

H5Id& H5Id::operator=(H5Id&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void H5Id::reset() {
  if (valid()) {
    Hdf5Guard guard;
    close_(id_);
  }
  id_ = H5I_INVALID_HID;
}

bool H5Id::close() {
  if (!valid()) return true;
  Hdf5Guard guard;
  const herr_t status = close_(id_);
  id_ = H5I_INVALID_HID;
  return status >= 0;
}

H5Id h5_open_file(const std::string& path) {
  // Shards are immutable once renamed into place, so readers need no file locks; skipping them
  // avoids "unable to lock file" failures on cluster file systems (Lustre, NFS) without flock.
  H5Id access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!access.valid() || H5Pset_file_locking(access.get(), false, true) < 0) {
    fail(path, "cannot make a file access property list");
  }
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get());
  if (id < 0) fail(path, "cannot open as an HDF5 file");
  return H5Id(id, H5Fclose);
}

H5Id h5_create_file(const std::string& path) {
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail(path, "cannot create HDF5 file");
  return H5Id(id, H5Fclose);
}

H5Id h5_open_dataset(const H5Id& file, const char* name, const std::string& path, bool uncached) {
  if (H5Lexists(file.get(), name, H5P_DEFAULT) <= 0) {
    throw DataError(path + ": has no '" + name + "' dataset");
  }
  H5Id access(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  if (!access.valid() ||
      (uncached && H5Pset_chunk_cache(access.get(), H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0,
                                      H5D_CHUNK_CACHE_W0_DEFAULT) < 0)) {
    fail(path, "cannot make a dataset access property list");
  }
  const hid_t id = H5Dopen2(file.get(), name, access.get());
  if (id < 0) fail(path, std::string("cannot open dataset '") + name + "'");
  return H5Id(id, H5Dclose);
}

void h5_write_1d(const H5Id& file, const char* name, hid_t file_type, hid_t mem_type,
                 const void* data, uint64_t size, uint64_t chunk, const std::string& path) {
  const hsize_t dims[1] = {size};
  H5Id space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  if (!space.valid()) fail(path, std::string("cannot make dataspace for '") + name + "'");
  H5Id create_plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  const hsize_t chunk_dims[1] = {chunk < 1 ? 1 : chunk};
  if (!create_plist.valid() || H5Pset_chunk(create_plist.get(), 1, chunk_dims) < 0) {
    fail(path, std::string("cannot set chunking for '") + name + "'");
  }
  H5Id dataset(H5Dcreate2(file.get(), name, file_type, space.get(), H5P_DEFAULT,
                          create_plist.get(), H5P_DEFAULT),
               H5Dclose);
  if (!dataset.valid()) fail(path, std::string("cannot create dataset '") + name + "'");
  if (size > 0 && H5Dwrite(dataset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail(path, std::string("cannot write dataset '") + name + "'");
  }
  if (!dataset.close()) fail(path, std::string("cannot close dataset '") + name + "'");
}

H5DatasetInfo h5_dataset_info(const H5Id& dataset, const std::string& path) {
  H5DatasetInfo info;
  H5Id space(H5Dget_space(dataset.get()), H5Sclose);
  if (!space.valid()) fail(path, "cannot read a dataset's shape");
  info.rank = H5Sget_simple_extent_ndims(space.get());
  if (info.rank == 1) {
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    info.size = dims[0];
  }
  H5Id type(H5Dget_type(dataset.get()), H5Tclose);
  if (!type.valid()) fail(path, "cannot read a dataset's type");
  info.is_integer = H5Tget_class(type.get()) == H5T_INTEGER;
  info.is_signed = info.is_integer && H5Tget_sign(type.get()) == H5T_SGN_2;
  info.element_bytes = H5Tget_size(type.get());
  return info;
}

void h5_read_1d(const H5Id& dataset, hid_t mem_type, uint64_t begin, uint64_t count, void* out,
                const std::string& path) {
  if (count == 0) return;
  H5Id file_space(H5Dget_space(dataset.get()), H5Sclose);
  const hsize_t start[1] = {begin};
  const hsize_t extent[1] = {count};
  H5Id mem_space(H5Screate_simple(1, extent, nullptr), H5Sclose);
  if (!file_space.valid() || !mem_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0) {
    fail(path, "cannot select tokens [" + std::to_string(begin) + ", " +
                   std::to_string(begin + count) + ")");
  }
  if (H5Dread(dataset.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    fail(path, "cannot read tokens [" + std::to_string(begin) + ", " +
                   std::to_string(begin + count) + ") (is the shard truncated?)");
  }
}

}  // namespace tessera::data
