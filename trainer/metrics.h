// Metrics: one JSON object per line in run.dir/metrics.jsonl, flushed every line so nothing is
// lost on a crash.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace tessera::trainer {

// Builds one flat JSON object. Non-finite doubles are written as null (JSON has no NaN).
class JsonLine {
 public:
  JsonLine& add(const std::string& key, int64_t value);
  JsonLine& add(const std::string& key, double value);
  JsonLine& add(const std::string& key, const std::string& value);
  JsonLine& add(const std::string& key, const std::vector<double>& values);  // a JSON array
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

std::string json_escape(const std::string& s);

class MetricsWriter {
 public:
  // Truncates (or, with append, extends) the file; throws naming the path if it cannot be opened.
  MetricsWriter(const std::string& path, bool append);
  void write(const JsonLine& line);

 private:
  std::string path_;
  std::ofstream out_;
};

// Keeps the lines of a metrics file whose "step" is <= max_step (a resumed run continues from
// its checkpoint's step). A missing file is left missing. When the file ends before max_step and
// `last_line` (the line of step max_step, from the checkpoint) is given, appends it: a run
// killed between saving a step and logging it loses no line.
void truncate_metrics(const std::string& path, int64_t max_step, const std::string& last_line = {});

// Renames a non-empty metrics file to the first free "<path>.N" (N = 1, 2, ...) and returns that
// path; returns "" (and does nothing) when the file is missing or empty. Throws naming both paths
// if the rename fails.
std::string set_aside_metrics(const std::string& path);

}  // namespace tessera::trainer
