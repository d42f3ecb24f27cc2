#include "trainer/metrics.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace tessera::trainer {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void JsonLine::key(const std::string& k) {
  if (!body_.empty()) body_ += ",";
  body_ += "\"" + json_escape(k) + "\":";
}

JsonLine& JsonLine::add(const std::string& k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

namespace {
std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", value);  // round-trips: resumed runs compare exactly
  return buf;
}
}  // namespace

JsonLine& JsonLine::add(const std::string& k, double value) {
  key(k);
  body_ += json_number(value);
  return *this;
}

JsonLine& JsonLine::add(const std::string& k, const std::vector<double>& values) {
  key(k);
  body_ += "[";
  for (size_t i = 0; i < values.size(); ++i) body_ += (i ? "," : "") + json_number(values[i]);
  body_ += "]";
  return *this;
}

JsonLine& JsonLine::add(const std::string& k, const std::string& value) {
  key(k);
  body_ += "\"" + json_escape(value) + "\"";
  return *this;
}

MetricsWriter::MetricsWriter(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!out_) throw std::runtime_error(path + ": cannot open for writing");
}

void MetricsWriter::write(const JsonLine& line) {
  out_ << line.str() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error(path_ + ": write failed");
}

void truncate_metrics(const std::string& path, int64_t max_step, const std::string& last_line) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  int64_t last_step = 0;
  while (std::getline(in, line)) {
    const size_t at = line.find("\"step\":");
    if (at == std::string::npos) continue;
    const int64_t step = std::stoll(line.substr(at + 7));
    if (step > max_step) break;
    kept += line + "\n";
    last_step = step;
  }
  if (last_step < max_step && !last_line.empty()) kept += last_line + "\n";
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << kept;
  if (!out.flush()) throw std::runtime_error(path + ": cannot rewrite the metrics file");
}

std::string set_aside_metrics(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) || std::filesystem::file_size(path, ec) == 0 || ec) {
    return "";
  }
  for (int n = 1;; ++n) {
    const std::string to = path + "." + std::to_string(n);
    if (std::filesystem::exists(to)) continue;
    std::filesystem::rename(path, to, ec);
    if (ec) throw std::runtime_error(path + ": cannot rename to " + to + ": " + ec.message());
    return to;
  }
}

}  // namespace tessera::trainer
