#include "trainer/checkpoint/meta.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "data/xxhash64.h"

namespace tessera::trainer {

namespace {

std::string hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string layout_text(const Recipe& r) {
  const ParallelConfig& p = r.parallel;
  std::ostringstream s;
  s << "pp=" << p.pp << " dp=" << p.dp << " ep=" << p.ep << " schedule=" << p.schedule
    << " micro_batches=" << p.micro_batches << " virtual_stages=" << p.virtual_stages;
  return s.str();
}

// trainer.yaml's last line: the XXH64 of every byte before it.
constexpr const char* kContentChecksumKey = "content_checksum";

std::string with_content_checksum(const std::string& text) {
  return text + kContentChecksumKey + ": " +
         data::format_checksum(data::xxh64(text.data(), text.size())) + "\n";
}

// Checks the content checksum of trainer.yaml's text; throws CheckpointDamaged naming the file.
// Format 2 files predate it: without the line they pass unchecked.
void check_content_checksum(const std::string& path, const std::string& text,
                            int64_t format_version) {
  const std::string marker = std::string("\n") + kContentChecksumKey + ":";
  const size_t at = text.rfind(marker);
  if (at == std::string::npos) {
    if (format_version < 3) return;
    throw CheckpointDamaged(path + ": no " + kContentChecksumKey +
                            " line (format_version " + std::to_string(format_version) +
                            " writes one last): the file was cut short or edited");
  }
  const std::string body = text.substr(0, at + 1);
  std::string line = text.substr(at + marker.size());
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  while (!line.empty() && line.front() == ' ') line.erase(0, 1);
  uint64_t want = 0;
  if (!data::parse_checksum(line, &want)) {
    throw CheckpointDamaged(path + ": malformed " + kContentChecksumKey + " '" + line +
                            "' (expected xxh64:<16 hex digits> on the last line)");
  }
  if (data::xxh64(body.data(), body.size()) != want) {
    throw CheckpointDamaged(path + ": " + kContentChecksumKey +
                            " mismatch: the file was edited or damaged after it was written");
  }
}

}  // namespace

std::string trainer_yaml_text(const CheckpointMeta& meta, const Recipe& recipe,
                              const std::vector<CheckpointTensor>& tensors,
                              const std::vector<uint64_t>& checksums) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << kCheckpointFormatVersion;
  out << YAML::Key << "step" << YAML::Value << meta.step;
  out << YAML::Key << "tokens_seen" << YAML::Value << meta.tokens_seen;
  out << YAML::Key << "lr_schedule_step" << YAML::Value << meta.step;
  out << YAML::Key << "optimizer_step" << YAML::Value << meta.optimizer_step;
  out << YAML::Key << "loader" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epoch" << YAML::Value << meta.loader_epoch;
  out << YAML::Key << "cursor" << YAML::Value << meta.loader_cursor;
  out << YAML::EndMap;
  // Nothing draws random numbers after initialisation: data order comes from train.seed and the
  // loader state above, initialisation from train.seed.
  out << YAML::Key << "rng" << YAML::Value << "none in use after initialisation";
  out << YAML::Key << "layout" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "world_size" << YAML::Value << meta.world_size;
  out << YAML::Key << "description" << YAML::Value << layout_text(recipe);
  out << YAML::EndMap;
  out << YAML::Key << "checksums" << YAML::Value << YAML::BeginMap;
  for (size_t i = 0; i < tensors.size(); ++i) {
    out << YAML::Key << tensors[i].name << YAML::Value << hex(checksums[i]);
  }
  out << YAML::EndMap;
  out << YAML::Key << "recipe" << YAML::Value << YAML::Load(recipe_to_yaml(recipe));
  if (!meta.metrics_line.empty()) {
    out << YAML::Key << "metrics_line" << YAML::Value << YAML::DoubleQuoted << meta.metrics_line;
  }
  out << YAML::EndMap;
  return with_content_checksum(std::string(out.c_str()) + "\n");
}

CheckpointInfo read_checkpoint_info(const std::string& step_dir, CheckpointEnv& env) {
  const std::filesystem::path path = std::filesystem::path(step_dir) / "trainer.yaml";
  if (!env.FileExists(path.string())) throw CheckpointDamaged(path.string() + ": missing");
  std::string text;
  try {
    text = env.ReadFile(path.string());
  } catch (const std::exception& e) {
    throw CheckpointDamaged(e.what());
  }
  CheckpointInfo info;
  YAML::Node y;
  try {
    y = YAML::Load(text);
    info.format_version = y["format_version"].as<int64_t>();
  } catch (const std::exception& e) {
    throw CheckpointDamaged(path.string() + ": malformed (" + e.what() + ")");
  }
  if (info.format_version < kOldestCheckpointFormatVersion ||
      info.format_version > kCheckpointFormatVersion) {
    throw CheckpointDamaged(path.string() + ": format_version " +
                            std::to_string(info.format_version) + ", this tessera reads " +
                            std::to_string(kOldestCheckpointFormatVersion) + " to " +
                            std::to_string(kCheckpointFormatVersion));
  }
  check_content_checksum(path.string(), text, info.format_version);
  try {
    info.meta.step = y["step"].as<int64_t>();
    info.meta.tokens_seen = y["tokens_seen"].as<int64_t>();
    info.meta.optimizer_step = y["optimizer_step"].as<int64_t>();
    info.meta.loader_epoch = y["loader"]["epoch"].as<uint64_t>();
    info.meta.loader_cursor = y["loader"]["cursor"].as<uint64_t>();
    info.meta.world_size = y["layout"]["world_size"].as<int64_t>();
    info.layout = y["layout"]["description"].as<std::string>();
    if (y["metrics_line"]) info.meta.metrics_line = y["metrics_line"].as<std::string>();
    for (const auto& kv : y["checksums"]) {
      info.checksums[kv.first.as<std::string>()] =
          std::stoull(kv.second.as<std::string>(), nullptr, 16);
    }
    YAML::Emitter e;
    e << y["recipe"];
    info.recipe_yaml = e.c_str();
  } catch (const std::exception& e) {
    throw CheckpointDamaged(path.string() + ": malformed (" + e.what() + ")");
  }
  return info;
}

}  // namespace tessera::trainer
