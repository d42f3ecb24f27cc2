// safetensors files (the Hugging Face tensor format): an 8-byte little-endian header length N, N
// bytes of JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
// "__metadata__": {string: string}}, then the tensors' raw little-endian bytes; offsets count from
// the end of the header. Element encodings used here: F32, BF16 (the top half of an F32) and
// F8_E4M3 (OCP e4m3fn: bias 7, max 448, no infinities, NaN = S.1111.111).
//
// The reader checks the whole header when it opens a file, so a damaged or hand-made file fails
// at once with a message naming the file and the tensor: unknown dtype, a byte range that does
// not match shape x dtype, ranges that overlap, leave gaps, or run past the data (a truncated
// file), a header length larger than the file. Data is read tensor by tensor (files of a large
// model are many GB), never all at once.
//
// The writer lays tensors out back to back in the order given (no gaps between them) and pads the
// header with spaces to a multiple of 8 bytes, as the reference implementation does, so that
// every tensor starts 8-byte aligned for readers that map the file.
//
// Thread-safety: a SafetensorsReader reads through one file stream: one thread at a time.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/tensor.h"

namespace tessera::trainer {

// Element encodings. Round-to-nearest-even (a NaN stays a quiet NaN of the same sign).
uint16_t float_to_bf16(float value);
float bf16_to_float(uint16_t bits);
float fp8_e4m3_to_float(uint8_t bits);

// Bytes per element of a safetensors dtype ("F32", "BF16", "F8_E4M3", "I64", ...); 0 when the
// name is not a safetensors dtype.
size_t safetensors_dtype_size(const std::string& dtype);

// One tensor of a file: its header entry.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  kernels::Shape shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
  uint64_t nbytes() const { return end - begin; }
};

class SafetensorsReader {
 public:
  // Opens and checks `path` (see above). Throws std::runtime_error naming the file (and the
  // tensor, where one is at fault).
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Entries in data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // Throws naming the tensor and the file when there is none.
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's raw bytes.
  std::vector<uint8_t> read_bytes(const std::string& name);
  // The tensor as floats (F32, BF16 or F8_E4M3 decoded; an F8 tensor's block scales are the
  // caller's business). Throws naming tensor and file when its shape is not `shape` or its
  // dtype is none of these.
  std::vector<float> read_floats(const std::string& name, const kernels::Shape& shape);

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t data_start_ = 0;  // file offset of the data section
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// What a writer is told about each tensor before any data.
struct SafetensorsTensorSpec {
  std::string name;
  std::string dtype;  // "F32" or "BF16" (what write_floats can encode), or any dtype for write_bytes
  kernels::Shape shape;
  uint64_t nbytes() const;
};

// Writes one file: the header at construction (every tensor's place is known from the specs),
// then each tensor's data in spec order. close() checks that every tensor was written.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The next tensor (spec order) from fp32 values, encoded to its dtype. REQUIRES: `values` has
  // its element count (checked).
  void write_floats(const std::vector<float>& values);
  void write_floats(const float* values, int64_t count);
  // The next tensor's raw bytes. REQUIRES: exactly its byte size (checked).
  void write_bytes(const void* data, uint64_t nbytes);
  // Flushes and closes; throws naming the file if a tensor is missing or the write failed.
  void close();

 private:
  const SafetensorsTensorSpec& next(uint64_t nbytes);
  std::string path_;
  std::ofstream out_;
  std::vector<SafetensorsTensorSpec> tensors_;
  size_t written_ = 0;
};

}  // namespace tessera::trainer
