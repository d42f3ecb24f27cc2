#include "data/manifest.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "data/atomic_file.h"
#include "data/data_error.h"
#include "data/xxhash64.h"

namespace tessera::data {

const char* dtype_name(TokenDtype dtype) {
  return dtype == TokenDtype::kUint16 ? "uint16" : "uint32";
}

size_t dtype_bytes(TokenDtype dtype) { return dtype == TokenDtype::kUint16 ? 2 : 4; }

TokenDtype dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDtype::kUint16 : TokenDtype::kUint32;
}

uint64_t SplitInfo::tokens() const {
  uint64_t total = 0;
  for (const ShardInfo& shard : shards) total += shard.tokens;
  return total;
}

uint64_t SplitInfo::documents() const {
  uint64_t total = 0;
  for (const ShardInfo& shard : shards) total += shard.documents;
  return total;
}

const SplitInfo& Manifest::split(const std::string& name, const std::string& path) const {
  const auto it = splits.find(name);
  if (it == splits.end()) {
    throw DataError(path + ": has no split '" + name + "' (expected 'train' or 'validation')");
  }
  return it->second;
}

std::string manifest_path(const std::string& dataset_dir) {
  return (std::filesystem::path(dataset_dir) / kManifestFile).string();
}

namespace {

// Reads typed values out of the YAML tree; every error names the file and the dotted key.
class ManifestReader {
 public:
  explicit ManifestReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw DataError(path_ + ": " + key + ": " + what);
  }

  // The value under `key`; a missing or null value is an error naming `name`.
  YAML::Node child(const YAML::Node& node, const std::string& key, const std::string& name) const {
    std::optional<YAML::Node> value = optional(node, key);
    if (!value) fail(name, "missing");
    return *value;
  }

  // The value under `key`, or nothing if it is missing or null.
  static std::optional<YAML::Node> optional(const YAML::Node& node, const std::string& key) {
    const YAML::Node value = node[key];
    if (!value.IsDefined() || value.IsNull()) return std::nullopt;
    return value;
  }

  int64_t integer(const YAML::Node& node, const std::string& name, int64_t min) const {
    int64_t value = 0;
    try {
      value = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(name, "expected an integer, got '" + scalar_text(node) + "'");
    }
    if (value < min) fail(name, "must be >= " + std::to_string(min) + ", got " + std::to_string(value));
    return value;
  }

  double real(const YAML::Node& node, const std::string& name) const {
    double value = 0;
    try {
      value = node.as<double>();
    } catch (const YAML::Exception&) {
      fail(name, "expected a number, got '" + scalar_text(node) + "'");
    }
    if (!std::isfinite(value)) fail(name, "must be finite");
    return value;
  }

  std::string text(const YAML::Node& node, const std::string& name) const {
    if (!node.IsScalar()) fail(name, "expected a string");
    return node.Scalar();
  }

 private:
  static std::string scalar_text(const YAML::Node& node) {
    return node.IsScalar() ? node.Scalar() : std::string("a non-scalar value");
  }

  std::string path_;
};

SplitInfo read_split(const ManifestReader& r, const YAML::Node& node, const std::string& name,
                     std::set<std::string>* seen_files) {
  SplitInfo split;
  if (!node.IsMap()) r.fail(name, "expected a mapping with 'shards'");
  const YAML::Node shards = r.child(node, "shards", name + ".shards");
  if (!shards.IsSequence()) r.fail(name + ".shards", "expected a list");
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string key = name + ".shards[" + std::to_string(i) + "]";
    const YAML::Node entry = shards[i];
    if (!entry.IsMap()) r.fail(key, "expected a mapping");
    ShardInfo shard;
    shard.file = r.text(r.child(entry, "file", key + ".file"), key + ".file");
    if (shard.file.empty() || shard.file.find('/') != std::string::npos || shard.file == "." ||
        shard.file == "..") {
      r.fail(key + ".file", "must be a plain file name inside the dataset directory, got '" +
                                shard.file + "'");
    }
    if (!seen_files->insert(shard.file).second) r.fail(key + ".file", "'" + shard.file + "' is listed twice");
    shard.tokens = static_cast<uint64_t>(r.integer(r.child(entry, "tokens", key + ".tokens"),
                                                   key + ".tokens", 0));
    if (const auto documents = r.optional(entry, "documents")) {
      shard.documents = static_cast<uint64_t>(r.integer(*documents, key + ".documents", 0));
    }
    const std::string checksum = r.text(r.child(entry, "checksum", key + ".checksum"), key + ".checksum");
    if (!parse_checksum(checksum, &shard.checksum)) {
      r.fail(key + ".checksum", "expected 'xxh64:' and 16 hex digits, got '" + checksum + "'");
    }
    split.shards.push_back(std::move(shard));
  }
  const auto total = r.optional(node, "tokens");
  if (total && static_cast<uint64_t>(r.integer(*total, name + ".tokens", 0)) != split.tokens()) {
    r.fail(name + ".tokens", "is " + total->Scalar() + " but the shards hold " +
                                 std::to_string(split.tokens()) + " tokens");
  }
  return split;
}

}  // namespace

Manifest read_manifest(const std::string& dataset_dir) {
  const std::string path = manifest_path(dataset_dir);
  std::error_code ec;
  if (!std::filesystem::exists(dataset_dir, ec)) {
    throw DataError(dataset_dir + ": dataset directory not found");
  }
  if (!std::filesystem::exists(path, ec)) {
    throw DataError(path + ": not found (is " + dataset_dir +
                    " a dataset written by `tessera prepare`, and did the prepare finish?)");
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw DataError(path + ": not valid YAML: " + e.what());
  }
  const ManifestReader r(path);
  if (!root.IsMap()) throw DataError(path + ": expected a YAML mapping at the top level");

  Manifest m;
  m.format_version = static_cast<int>(r.integer(r.child(root, "format_version", "format_version"),
                                                "format_version", 0));
  if (m.format_version != kManifestVersion) {
    r.fail("format_version", "version " + std::to_string(m.format_version) +
                                 " is not supported (this build reads version " +
                                 std::to_string(kManifestVersion) + "); re-run `tessera prepare`");
  }
  m.tokenizer = r.text(r.child(root, "tokenizer", "tokenizer"), "tokenizer");
  if (m.tokenizer != "byte" && m.tokenizer != "bpe" && m.tokenizer != "synthetic") {
    r.fail("tokenizer", "expected byte, bpe or synthetic, got '" + m.tokenizer + "'");
  }
  m.vocab_size = r.integer(r.child(root, "vocab_size", "vocab_size"), "vocab_size", 1);
  if (m.vocab_size > (int64_t{1} << 32)) r.fail("vocab_size", "must be <= 2^32");
  const std::string dtype = r.text(r.child(root, "token_dtype", "token_dtype"), "token_dtype");
  if (dtype == "uint16") {
    m.dtype = TokenDtype::kUint16;
  } else if (dtype == "uint32") {
    m.dtype = TokenDtype::kUint32;
  } else {
    r.fail("token_dtype", "expected uint16 or uint32, got '" + dtype + "'");
  }
  if (m.dtype == TokenDtype::kUint16 && m.vocab_size > 65536) {
    r.fail("token_dtype", "uint16 cannot hold the ids of vocab_size " + std::to_string(m.vocab_size));
  }
  if (const auto eod = r.optional(root, "eod_token")) {
    m.eod_token = r.integer(*eod, "eod_token", 0);
    if (*m.eod_token >= m.vocab_size) r.fail("eod_token", "must be < vocab_size");
  }
  if (m.tokenizer == "bpe") {
    m.bpe_merges = r.text(r.child(root, "bpe_merges", "bpe_merges"), "bpe_merges");
  }
  if (const auto h = r.optional(root, "entropy_rate_nats")) {
    m.entropy_rate_nats = r.real(*h, "entropy_rate_nats");
  }
  if (const auto synthetic = r.optional(root, "synthetic")) {
    const YAML::Node& s = *synthetic;
    if (!s.IsMap()) r.fail("synthetic", "expected a mapping");
    SyntheticInfo info;
    info.order = r.integer(r.child(s, "order", "synthetic.order"), "synthetic.order", 1);
    info.support = r.integer(r.child(s, "support", "synthetic.support"), "synthetic.support", 1);
    info.concentration = r.real(r.child(s, "concentration", "synthetic.concentration"), "synthetic.concentration");
    info.smoothing = r.real(r.child(s, "smoothing", "synthetic.smoothing"), "synthetic.smoothing");
    info.seed = static_cast<uint64_t>(r.integer(r.child(s, "seed", "synthetic.seed"), "synthetic.seed", 0));
    info.entropy_rate_nats = r.real(r.child(s, "entropy_rate_nats", "synthetic.entropy_rate_nats"),
                                    "synthetic.entropy_rate_nats");
    m.synthetic = info;
  }
  if (m.tokenizer == "synthetic" && !m.entropy_rate_nats) {
    r.fail("entropy_rate_nats", "missing (synthetic datasets record their entropy rate)");
  }
  if (const auto notes = r.optional(root, "notes")) {
    if (!notes->IsMap()) r.fail("notes", "expected a mapping");
    for (const auto& kv : *notes) {
      m.notes[kv.first.Scalar()] = kv.second.IsScalar() ? kv.second.Scalar() : std::string();
    }
  }
  const YAML::Node splits = r.child(root, "splits", "splits");
  if (!splits.IsMap()) r.fail("splits", "expected a mapping of split names");
  std::set<std::string> seen_files;
  for (const auto& kv : splits) {
    const std::string name = kv.first.Scalar();
    if (name != kTrainSplit && name != kValidationSplit) {
      r.fail("splits." + name, "unknown split (expected train or validation)");
    }
    m.splits[name] = read_split(r, kv.second, "splits." + name, &seen_files);
  }
  return m;
}

void write_manifest(const std::string& dataset_dir, const Manifest& m) {
  YAML::Emitter out;
  out.SetDoublePrecision(17);
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << m.format_version;
  out << YAML::Key << "tokenizer" << YAML::Value << m.tokenizer;
  out << YAML::Key << "vocab_size" << YAML::Value << m.vocab_size;
  out << YAML::Key << "token_dtype" << YAML::Value << dtype_name(m.dtype);
  if (m.eod_token) out << YAML::Key << "eod_token" << YAML::Value << *m.eod_token;
  if (!m.bpe_merges.empty()) out << YAML::Key << "bpe_merges" << YAML::Value << m.bpe_merges;
  if (m.entropy_rate_nats) {
    out << YAML::Key << "entropy_rate_nats" << YAML::Value << *m.entropy_rate_nats;
  }
  if (m.synthetic) {
    const SyntheticInfo& s = *m.synthetic;
    out << YAML::Key << "synthetic" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "order" << YAML::Value << s.order;
    out << YAML::Key << "support" << YAML::Value << s.support;
    out << YAML::Key << "concentration" << YAML::Value << s.concentration;
    out << YAML::Key << "smoothing" << YAML::Value << s.smoothing;
    out << YAML::Key << "seed" << YAML::Value << s.seed;
    out << YAML::Key << "entropy_rate_nats" << YAML::Value << s.entropy_rate_nats;
    out << YAML::Key << "entropy_rate_bits" << YAML::Value << s.entropy_rate_nats / std::log(2.0);
    out << YAML::EndMap;
  }
  if (!m.notes.empty()) {
    out << YAML::Key << "notes" << YAML::Value << YAML::BeginMap;
    for (const auto& [key, value] : m.notes) out << YAML::Key << key << YAML::Value << value;
    out << YAML::EndMap;
  }
  out << YAML::Key << "splits" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, split] : m.splits) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "tokens" << YAML::Value << split.tokens();
    out << YAML::Key << "documents" << YAML::Value << split.documents();
    out << YAML::Key << "shards" << YAML::Value << YAML::BeginSeq;
    for (const ShardInfo& shard : split.shards) {
      out << YAML::Flow << YAML::BeginMap;
      out << YAML::Key << "file" << YAML::Value << shard.file;
      out << YAML::Key << "tokens" << YAML::Value << shard.tokens;
      out << YAML::Key << "documents" << YAML::Value << shard.documents;
      out << YAML::Key << "checksum" << YAML::Value << format_checksum(shard.checksum);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq << YAML::EndMap;
  }
  out << YAML::EndMap;
  if (!out.good()) throw DataError(manifest_path(dataset_dir) + ": cannot emit YAML: " + out.GetLastError());
  write_file_atomic(manifest_path(dataset_dir), std::string(out.c_str()) + "\n");
}

}  // namespace tessera::data
