#include "kernels/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace tessera::kernels {

namespace {
constexpr size_t kAlignment = 64;
}  // namespace

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU16: return 2;
    case DType::kU32: return 4;
  }
  throw std::invalid_argument("dtype_size: unknown dtype " +
                              std::to_string(static_cast<int>(dtype)));
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF64: return "f64";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU16: return "u16";
    case DType::kU32: return "u32";
  }
  return "unknown";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_string(shape));
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::shared_ptr<void> aligned_host_memory(size_t bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment; never allocate 0 bytes.
  const size_t rounded = ((bytes + kAlignment - 1) / kAlignment) * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (!ptr) throw std::bad_alloc();
  return std::shared_ptr<void>(ptr, std::free);
}

// One allocation; views hold it through shared_ptr: an aligned host allocation of its own or
// memory adopted from a backend.
struct Tensor::Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::kCPU;
  std::shared_ptr<void> memory;

  Storage(std::shared_ptr<void> owned, size_t nbytes, Device dev)
      : ptr(owned.get()), bytes(nbytes), device(dev), memory(std::move(owned)) {}
};

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  if (device != Device::kCPU) {
    throw std::runtime_error("Tensor: Device::kCUDA allocation is not supported on a CPU-only "
                             "build");
  }
  return adopt(aligned_host_memory(bytes), std::move(shape), dtype, device);
}

Tensor Tensor::adopt(std::shared_ptr<void> memory, Shape shape, DType dtype, Device device) {
  if (!memory) throw std::invalid_argument("Tensor::adopt: null memory");
  Tensor t;
  const int64_t n = shape_numel(shape);
  t.storage_ =
      std::make_shared<Storage>(std::move(memory), static_cast<size_t>(n) * dtype_size(dtype), device);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  t.fill_zero();
  return t;
}

void* Tensor::raw() const {
  if (!storage_) throw std::logic_error("Tensor: data access on an undefined tensor");
  return static_cast<char*>(storage_->ptr) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

template <typename T>
T* Tensor::data() {
  if (dtype_of<T>() != dtype_) {
    throw std::logic_error(std::string("Tensor::data: tensor of dtype ") + dtype_name(dtype_) +
                           " " + shape_string(shape_) + " read as " + dtype_name(dtype_of<T>()));
  }
  return static_cast<T*>(raw());
}

template <typename T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

Tensor Tensor::view(int64_t offset, Shape shape) const {
  if (!storage_) throw std::logic_error("Tensor::view of an undefined tensor");
  const int64_t n = shape_numel(shape);
  if (offset < 0 || offset + n > numel()) {
    throw std::out_of_range("Tensor::view: offset " + std::to_string(offset) + " + shape " +
                            shape_string(shape) + " exceeds a tensor of shape " +
                            shape_string(shape_));
  }
  Tensor t = *this;
  t.offset_ = offset_ + offset;
  t.shape_ = std::move(shape);
  return t;
}

void Tensor::fill_zero() {
  if (!storage_) throw std::logic_error("Tensor::fill_zero of an undefined tensor");
  if (device_ != Device::kCPU) {
    throw std::logic_error("Tensor::fill_zero of a device tensor " + shape_string(shape_) +
                           ": fill it through its backend");
  }
  std::memset(raw(), 0, nbytes());
}

template float* Tensor::data<float>();
template double* Tensor::data<double>();
template int32_t* Tensor::data<int32_t>();
template int64_t* Tensor::data<int64_t>();
template uint16_t* Tensor::data<uint16_t>();
template uint32_t* Tensor::data<uint32_t>();
template const float* Tensor::data<float>() const;
template const double* Tensor::data<double>() const;
template const int32_t* Tensor::data<int32_t>() const;
template const int64_t* Tensor::data<int64_t>() const;
template const uint16_t* Tensor::data<uint16_t>() const;
template const uint32_t* Tensor::data<uint32_t>() const;

}  // namespace tessera::kernels
