// Tensor: shape + dtype + device + a shared buffer. Views share the buffer and carry an
// element offset, so one allocation can be carved into named parameters (ParamTable) and
// activations can live in reused arenas (a first touch of a fresh page costs ~11 us here).
//
// Thread-safety: a Tensor is a value with shared storage; concurrent writes to the same
// elements are the caller's problem, as with any buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessera::kernels {

enum class DType : uint8_t { kF32, kF64, kI32, kI64, kU16, kU32 };
enum class Device : uint8_t { kCPU, kCUDA };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kF32; }
template <> constexpr DType dtype_of<double>() { return DType::kF64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kI32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kI64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::kU16; }
template <> constexpr DType dtype_of<uint32_t>() { return DType::kU32; }

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& shape);
std::string shape_string(const Shape& shape);  // "[2, 3]"

// `bytes` of uninitialised host memory, 64-byte aligned (at least 64 bytes, so an empty tensor
// is still defined()), freed when the last owner goes. Throws std::bad_alloc.
std::shared_ptr<void> aligned_host_memory(size_t bytes);

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised CPU memory, 64-byte aligned.
  static Tensor empty(Shape shape, DType dtype, Device device = Device::kCPU);
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::kCPU);
  // A tensor over memory someone else allocated (a backend: CUDA device or pinned host memory);
  // `memory` owns it and frees it when the last view goes. REQUIRES: at least
  // numel(shape) * dtype_size(dtype) bytes at memory.get().
  static Tensor adopt(std::shared_ptr<void> memory, Shape shape, DType dtype, Device device);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool defined() const { return storage_ != nullptr; }
  size_t nbytes() const { return numel() * dtype_size(dtype_); }

  // REQUIRES: T matches dtype() (checked; throws std::logic_error otherwise).
  template <typename T> T* data();
  template <typename T> const T* data() const;

  // A view of numel(shape) elements starting at element `offset`; shares storage.
  // REQUIRES: offset + numel(shape) <= numel().
  Tensor view(int64_t offset, Shape shape) const;
  Tensor reshape(Shape shape) const { return view(0, std::move(shape)); }

  // Zeroes the elements. REQUIRES: host memory (a Device::kCPU tensor); device tensors are
  // filled through their backend.
  void fill_zero();

 private:
  struct Storage;
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // elements
  Shape shape_;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCPU;
  void* raw() const;
};

}  // namespace tessera::kernels
