// Small RAII layer over HDF5's C API (the installed library is the parallel build, so there is no
// C++ API to lean on). Files here are opened serially with the default property lists.
//
// Thread-safety: this HDF5 build is not thread-safe (H5_HAVE_THREADSAFE is off), yet the loader's
// prefetch thread reads shards while the training thread may write checkpoints. Every HDF5 call in
// the process must therefore hold hdf5_mutex(). Hdf5Guard takes it (recursively) and also turns off
// HDF5's automatic error printing for its scope, so failures become DataErrors with the library's
// own reason instead of a stack dump on stderr. Code outside data/ that calls HDF5 (checkpoints)
// must hold an Hdf5Guard, or at least lock hdf5_mutex(), around its calls.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>

namespace tessera::data {

std::recursive_mutex& hdf5_mutex();

class Hdf5Guard {
 public:
  Hdf5Guard();
  ~Hdf5Guard();
  Hdf5Guard(const Hdf5Guard&) = delete;
  Hdf5Guard& operator=(const Hdf5Guard&) = delete;

 private:
  std::unique_lock<std::recursive_mutex> lock_;
  H5E_auto2_t saved_func_ = nullptr;
  void* saved_data_ = nullptr;
};

// The reason HDF5 gave for the last failure on this thread: its innermost (most specific) message,
// e.g. "truncated file: eof = 100, sblock->base_addr = 0, stored_eof = 5000". Empty if none.
std::string hdf5_error_text();

// Owns one hid_t and closes it with the matching H5*close function. Move-only.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Id(H5Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = H5I_INVALID_HID; }
  H5Id& operator=(H5Id&& other) noexcept;
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports failure (destructors cannot); used where a failed close loses data.
  // Returns false if the close failed.
  bool close();
  // Forgets the id without closing it (the HDF5 library still holds the object): for a parallel
  // file whose collective close would wait forever after a failed write on another rank.
  void release() { id_ = H5I_INVALID_HID; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Checked constructors: each throws DataError("<path>: <what> (<HDF5 reason>)") on failure.
// REQUIRES: the caller holds an Hdf5Guard.
H5Id h5_open_file(const std::string& path);    // read-only, without file locking
H5Id h5_create_file(const std::string& path);  // truncates
// `uncached`: no HDF5 chunk cache, so reading a few elements reads just those bytes rather than
// whole chunks (what random access to samples wants).
H5Id h5_open_dataset(const H5Id& file, const char* name, const std::string& path,
                     bool uncached = false);
// A 1-D chunked dataset of `size` elements of `file_type`, filled from `data` (native `mem_type`).
void h5_write_1d(const H5Id& file, const char* name, hid_t file_type, hid_t mem_type,
                 const void* data, uint64_t size, uint64_t chunk, const std::string& path);

// Facts about a 1-D dataset: element count and the stored integer type.
struct H5DatasetInfo {
  uint64_t size = 0;
  int rank = 0;
  bool is_integer = false;
  bool is_signed = false;
  size_t element_bytes = 0;
};
H5DatasetInfo h5_dataset_info(const H5Id& dataset, const std::string& path);

// Reads elements [begin, begin + count) of a 1-D dataset as native `mem_type` into out.
void h5_read_1d(const H5Id& dataset, hid_t mem_type, uint64_t begin, uint64_t count, void* out,
                const std::string& path);

}  // namespace tessera::data
