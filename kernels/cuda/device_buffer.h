// DeviceBuffer<T>: an owning, move-only array of T in CUDA device memory, with blocking copies
// to and from host vectors. For tests, tables and scratch; model tensors use kernels::Tensor.
//
// Thread-safety: as a std::vector (no internal locking).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/device.h"

namespace tessera::kernels::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // n uninitialised elements. REQUIRES: n >= 0.
  explicit DeviceBuffer(int64_t n) : size_(n) {
    if (n < 0) throw std::invalid_argument("DeviceBuffer: negative size " + std::to_string(n));
    if (n > 0) TESSERA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
  }
  // A device copy of host.
  explicit DeviceBuffer(const std::vector<T>& host)
      : DeviceBuffer(static_cast<int64_t>(host.size())) {
    copy_from(host);
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);  // no throwing from a destructor; a failed free leaks
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  size_t bytes() const { return static_cast<size_t>(size_) * sizeof(T); }

  // Copy of host into the buffer, complete on return (a plain cudaMemcpy from pageable memory
  // may return before its DMA lands, which kernels on non-blocking streams could race).
  // REQUIRES: host.size() == size() (checked).
  void copy_from(const std::vector<T>& host) {
    if (static_cast<int64_t>(host.size()) != size_) {
      throw std::invalid_argument("DeviceBuffer::copy_from: host has " +
                                  std::to_string(host.size()) + " elements, buffer " +
                                  std::to_string(size_));
    }
    if (size_ > 0) {
      TESSERA_CUDA_CHECK(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice));
      TESSERA_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
    }
  }

  // Blocking copy to the host. Waits for work queued on the legacy default stream and the
  // blocking streams, not for non-blocking streams: synchronise those first.
  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    if (size_ > 0) {
      TESSERA_CUDA_CHECK(cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost));
    }
    return host;
  }

 private:
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace tessera::kernels::cuda
