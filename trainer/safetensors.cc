#include "trainer/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "kernels/math/low_precision.h"

namespace tessera::trainer {

// The format is little-endian; tensors are copied to and from memory as they are.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace {

using nlohmann::json;

std::string in_quotes(const std::string& name) { return "'" + name + "'"; }

std::runtime_error file_error(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what);
}

std::runtime_error tensor_error(const std::string& path, const std::string& name,
                                const std::string& what) {
  return std::runtime_error(path + ": tensor " + in_quotes(name) + ": " + what);
}

std::string range_text(const SafetensorsEntry& e) {
  return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ")";
}

// One header entry, every field checked; errors name the tensor.
SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const json& j) {
  auto bad = [&](const std::string& what) { return tensor_error(path, name, what); };
  if (!j.is_object()) throw bad("header entry is not an object");
  SafetensorsEntry e;
  e.name = name;
  if (!j.contains("dtype") || !j["dtype"].is_string()) throw bad("no \"dtype\" string");
  e.dtype = j["dtype"].get<std::string>();
  if (safetensors_dtype_size(e.dtype) == 0) throw bad("unknown dtype " + e.dtype);
  if (!j.contains("shape") || !j["shape"].is_array()) throw bad("no \"shape\" array");
  for (const json& d : j["shape"]) {
    if (!d.is_number_unsigned()) throw bad("shape " + j["shape"].dump() + " is not a list of sizes");
    e.shape.push_back(d.get<int64_t>());
  }
  const json& off = j.contains("data_offsets") ? j["data_offsets"] : json();
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned()) {
    throw bad("no \"data_offsets\": [begin, end]");
  }
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin) throw bad("data_offsets " + range_text(e) + " end before they begin");
  const uint64_t want =
      static_cast<uint64_t>(kernels::shape_numel(e.shape)) * safetensors_dtype_size(e.dtype);
  if (e.nbytes() != want) {
    throw bad("data_offsets " + range_text(e) + " hold " + std::to_string(e.nbytes()) +
              " bytes but " + e.dtype + " " + kernels::shape_string(e.shape) + " needs " +
              std::to_string(want));
  }
  return e;
}

}  // namespace

// The shared conversions (kernels/math/low_precision.h): one implementation of each format,
// checked exhaustively by tests/kernels. The E4M3 NaN keeps its sign.
uint16_t float_to_bf16(float value) { return kernels::math::float_to_bf16(value); }

float bf16_to_float(uint16_t bits) { return kernels::math::bf16_to_float(bits); }

float fp8_e4m3_to_float(uint8_t bits) { return kernels::math::e4m3_to_float(bits); }

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},     {"U32", 4},     {"F32", 4},
      {"I64", 8},  {"U64", 8}, {"F64", 8}};
  const auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

SafetensorsReader::SafetensorsReader(const std::string& path)
    : path_(path), in_(path, std::ios::binary) {
  if (!in_) throw file_error(path, "cannot open");
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw file_error(path, "cannot stat: " + ec.message());
  uint64_t header_len = 0;
  if (file_size < sizeof(header_len)) {
    throw file_error(path, "too short (" + std::to_string(file_size) +
                               " bytes) to hold the 8-byte header length");
  }
  in_.read(reinterpret_cast<char*>(&header_len), sizeof(header_len));
  if (header_len > file_size - sizeof(header_len)) {
    throw file_error(path, "header length " + std::to_string(header_len) +
                               " is larger than the file (" + std::to_string(file_size) +
                               " bytes): truncated, or not a safetensors file");
  }
  std::string text(header_len, '\0');
  in_.read(text.data(), static_cast<std::streamsize>(header_len));
  if (!in_) throw file_error(path, "cannot read the header");
  data_start_ = sizeof(header_len) + header_len;
  const uint64_t data_size = file_size - data_start_;

  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    throw file_error(path, std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) throw file_error(path, "header is not a JSON object");
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw file_error(path, "__metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) throw file_error(path, "__metadata__ " + in_quotes(k) + " is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    entries_.push_back(parse_entry(path, name, value));
  }

  // Byte ranges must tile the data section exactly: in order, each starting where the previous
  // ended, the last ending at the end of the file.
  std::sort(entries_.begin(), entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const SafetensorsEntry& e = entries_[i];
    if (e.end > data_size) {
      throw tensor_error(path, e.name, "data_offsets " + range_text(e) +
                                           " run past the end of the data (" +
                                           std::to_string(data_size) + " bytes): the file is truncated");
    }
    if (e.begin < at) {
      throw tensor_error(path, e.name, "data_offsets " + range_text(e) + " overlap tensor " +
                                           in_quotes(entries_[i - 1].name) + " " +
                                           range_text(entries_[i - 1]));
    }
    if (e.begin > at) {
      throw tensor_error(path, e.name, "data_offsets " + range_text(e) +
                                           " are not contiguous: bytes [" + std::to_string(at) +
                                           ", " + std::to_string(e.begin) + ") belong to no tensor");
    }
    at = e.end;
  }
  if (at != data_size) {
    throw file_error(path, "the data section has " + std::to_string(data_size) +
                               " bytes but its tensors end at byte " + std::to_string(at) +
                               " (bytes after the last tensor belong to no tensor)");
  }
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw tensor_error(path_, name, "missing");
  return entries_[it->second];
}

std::vector<uint8_t> SafetensorsReader::read_bytes(const std::string& name) {
  const SafetensorsEntry& e = entry(name);
  std::vector<uint8_t> bytes(e.nbytes());
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  in_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!in_) throw tensor_error(path_, name, "read failed");
  return bytes;
}

std::vector<float> SafetensorsReader::read_floats(const std::string& name,
                                                  const kernels::Shape& shape) {
  const SafetensorsEntry& e = entry(name);
  if (e.shape != shape) {
    throw tensor_error(path_, name, "shape " + kernels::shape_string(e.shape) + ", expected " +
                                        kernels::shape_string(shape));
  }
  if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F8_E4M3") {
    throw tensor_error(path_, name, "dtype " + e.dtype + " is not supported (F32, BF16, F8_E4M3)");
  }
  const std::vector<uint8_t> bytes = read_bytes(name);
  const size_t n = static_cast<size_t>(kernels::shape_numel(e.shape));
  std::vector<float> out(n);
  if (e.dtype == "F32") {
    std::memcpy(out.data(), bytes.data(), n * sizeof(float));
  } else if (e.dtype == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, sizeof(b));
      out[i] = bf16_to_float(b);
    }
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = fp8_e4m3_to_float(bytes[i]);
  }
  return out;
}

uint64_t SafetensorsTensorSpec::nbytes() const {
  return static_cast<uint64_t>(kernels::shape_numel(shape)) * safetensors_dtype_size(dtype);
}

SafetensorsWriter::SafetensorsWriter(const std::string& path,
                                     std::vector<SafetensorsTensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)) {
  // ordered_json: the header lists the tensors in data order, metadata first.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t at = 0;
  for (const SafetensorsTensorSpec& t : tensors_) {
    if (safetensors_dtype_size(t.dtype) == 0) {
      throw tensor_error(path, t.name, "unknown dtype " + t.dtype);
    }
    if (header.contains(t.name)) throw tensor_error(path, t.name, "named twice");
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.nbytes()}}};
    at += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  out_.open(path, std::ios::binary | std::ios::trunc);
  if (!out_) throw file_error(path, "cannot create");
  const uint64_t header_len = text.size();
  out_.write(reinterpret_cast<const char*>(&header_len), sizeof(header_len));
  out_.write(text.data(), static_cast<std::streamsize>(text.size()));
}

const SafetensorsTensorSpec& SafetensorsWriter::next(uint64_t nbytes) {
  if (written_ >= tensors_.size()) throw file_error(path_, "more tensors written than planned");
  const SafetensorsTensorSpec& t = tensors_[written_];
  if (nbytes != t.nbytes()) {
    throw tensor_error(path_, t.name, "given " + std::to_string(nbytes) + " bytes, its " + t.dtype +
                                          " " + kernels::shape_string(t.shape) + " needs " +
                                          std::to_string(t.nbytes()));
  }
  ++written_;
  return t;
}

void SafetensorsWriter::write_bytes(const void* data, uint64_t nbytes) {
  next(nbytes);
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
}

void SafetensorsWriter::write_floats(const std::vector<float>& values) {
  write_floats(values.data(), static_cast<int64_t>(values.size()));
}

void SafetensorsWriter::write_floats(const float* values, int64_t count) {
  if (written_ >= tensors_.size()) throw file_error(path_, "more tensors written than planned");
  const SafetensorsTensorSpec& t = tensors_[written_];
  if (t.dtype == "F32") {
    write_bytes(values, static_cast<uint64_t>(count) * sizeof(float));
  } else if (t.dtype == "BF16") {
    std::vector<uint16_t> bf16(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) bf16[i] = float_to_bf16(values[i]);
    write_bytes(bf16.data(), bf16.size() * sizeof(uint16_t));
  } else {
    throw tensor_error(path_, t.name, "cannot encode floats as " + t.dtype + " (F32, BF16)");
  }
}

void SafetensorsWriter::close() {
  if (written_ != tensors_.size()) {
    throw tensor_error(path_, tensors_[written_].name, "never written (" +
                                                           std::to_string(written_) + " of " +
                                                           std::to_string(tensors_.size()) + " tensors)");
  }
  out_.flush();
  out_.close();
  if (!out_) throw file_error(path_, "write failed");
}

}  // namespace tessera::trainer
