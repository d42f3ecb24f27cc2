#include "cluster/trace_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "cluster/process.h"

namespace tessera::cluster {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Kind {
  const char* name;
  const char* title;
  const char* colour;
};
// Colour-blind-safe (Paul Tol's bright scheme); communication last, drawn over the rows' grid.
constexpr Kind kKinds[] = {{"F", "F forward", "#4477AA"},
                           {"B", "B backward-input", "#EE6677"},
                           {"W", "W backward-weight", "#228833"},
                           {"other", "other compute", "#BBBBBB"},
                           {"wait", "waiting for communication", "#CCBB44"},
                           {"comm", "communication", "#AA3377"}};

// "F", or "F attention" (a piece of a forward): the first word decides; "wait <op>" is the
// compute thread blocked on a Work (drawn over the piece that waits).
std::string compute_kind(const std::string& name) {
  const std::string first = name.substr(0, name.find(' '));
  if (first == "wait") return "wait";
  return first == "F" || first == "B" || first == "W" ? first : "other";
}

// A label inside a gnuplot double-quoted string (noenhanced: only quotes and backslashes).
std::string gp_label(std::string s) {
  for (char& c : s) {
    if (c == '"' || c == '\\' || c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

Timeline read_timeline(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read the trace (run `tessera train` with "
                                    "logging.trace_steps set to write it)");
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path + ": malformed trace: not JSON (" + e.what() + ")");
  }
  if (!doc.is_object() || !doc.contains("traceEvents") || !doc["traceEvents"].is_array()) {
    throw std::runtime_error(path + ": malformed trace: expected a JSON object with a "
                             "\"traceEvents\" array");
  }
  std::map<std::pair<int, int>, std::string> thread_names;  // (pid, tid) -> lane
  std::map<int, std::string> process_names;
  struct Raw {
    int pid, tid;
    std::string name, cat;
    double ts, dur;
  };
  std::vector<Raw> raw;
  size_t index = 0;
  for (const json& e : doc["traceEvents"]) {
    const std::string where = path + ": traceEvents[" + std::to_string(index++) + "]";
    try {
      if (!e.is_object()) throw std::runtime_error("not an object");
      const std::string ph = e.value("ph", "");
      if (ph == "M") {
        const std::string name = e.at("name").get<std::string>();
        const int pid = e.at("pid").get<int>();
        if (name == "process_name") {
          process_names[pid] = e.at("args").at("name").get<std::string>();
        } else if (name == "thread_name") {
          thread_names[{pid, e.at("tid").get<int>()}] = e.at("args").at("name").get<std::string>();
        }
      } else if (ph == "X") {
        Raw r{e.at("pid").get<int>(), e.at("tid").get<int>(), e.at("name").get<std::string>(),
              e.value("cat", ""), e.at("ts").get<double>(), e.at("dur").get<double>()};
        if (!std::isfinite(r.ts) || !std::isfinite(r.dur) || r.dur < 0) {
          throw std::runtime_error("ts/dur must be finite, dur >= 0");
        }
        raw.push_back(std::move(r));
      }
    } catch (const json::exception& x) {
      throw std::runtime_error(where + ": malformed event: " + x.what());
    } catch (const std::runtime_error& x) {
      throw std::runtime_error(where + ": malformed event: " + x.what());
    }
  }
  if (raw.empty()) {
    throw std::runtime_error(path + ": the trace holds no complete (\"ph\": \"X\") events: "
                             "nothing to plot");
  }
  double t0 = std::numeric_limits<double>::infinity();
  for (const Raw& r : raw) t0 = std::min(t0, r.ts);
  Timeline t;
  for (const Raw& r : raw) {
    const auto lane = thread_names.find({r.pid, r.tid});
    // The lane's name decides; without metadata, the event's category.
    const bool comm = lane != thread_names.end() ? lane->second.rfind("comm:", 0) == 0
                                                 : r.cat == "comm";
    TimelineBox b;
    b.pid = r.pid;
    b.comm = comm;
    b.kind = comm ? "comm" : compute_kind(r.name);
    b.start_ms = (r.ts - t0) / 1e3;
    b.duration_ms = r.dur / 1e3;
    t.end_ms = std::max(t.end_ms, b.start_ms + b.duration_ms);
    t.pids.push_back(r.pid);
    t.boxes.push_back(std::move(b));
  }
  std::sort(t.pids.begin(), t.pids.end());
  t.pids.erase(std::unique(t.pids.begin(), t.pids.end()), t.pids.end());
  for (int pid : t.pids) {
    const auto it = process_names.find(pid);
    t.process_names.push_back(it != process_names.end() ? it->second
                                                        : "rank " + std::to_string(pid));
  }
  return t;
}

std::string timeline_script(const Timeline& t, const std::string& png, int width) {
  const int n = static_cast<int>(t.pids.size());
  const int height = 200 + 70 * n;  // title, key and axis labels around the bands
  const double span = t.end_ms > 0 ? t.end_ms : 1.0;
  // Every piece at least about one pixel wide, so that short operations stay visible.
  const double min_half_ms = 0.5 * span / std::max(1.0, 0.75 * width);
  std::map<int, int> band;  // pid -> band index, rank 0 on top
  for (int i = 0; i < n; ++i) band[t.pids[i]] = n - 1 - i;

  std::ostringstream g;
  for (const Kind& k : kKinds) {
    g << "$" << k.name << " << EOD\n";
    for (const TimelineBox& b : t.boxes) {
      if (b.kind != k.name) continue;
      const double half = std::max(b.duration_ms / 2, min_half_ms);
      const double y = band[b.pid] + (b.comm ? 0.3 : 0.72);
      g << num(b.start_ms + b.duration_ms / 2) << " " << num(y) << " " << num(half) << " "
        << (b.comm ? "0.18" : "0.2") << "\n";
    }
    g << "EOD\n";
  }
  g << "set terminal png truecolor noenhanced size " << width << "," << height << "\n"
    << "set output '" << png << "'\n"
    << "set title 'Timeline of the traced steps: compute (upper row) and communication (lower "
       "row) per rank'\n"
    << "set xlabel 'time (ms)'\n"
    << "set xrange [0:" << num(span * 1.01) << "]\n"
    << "set yrange [0:" << n << "]\n"
    << "set grid xtics\n"
    // One row above the plot: below it gnuplot clipped a key that wrapped to a second row.
    << "set key outside top center horizontal maxrows 1 samplen 2 width -4\n"
    << "set ytics (";
  for (int i = 0; i < n; ++i) {
    const int y = band[t.pids[i]];
    g << (i ? ", " : "") << "\"" << gp_label(t.process_names[i]) << "  compute\" " << y + 0.72
      << ", \"comm\" " << y + 0.3;
  }
  g << ")\n";
  for (int i = 1; i < n; ++i) {
    g << "set arrow from graph 0, first " << i << " to graph 1, first " << i
      << " nohead lc rgb '#666666'\n";
  }
  std::string plots;
  for (const Kind& k : kKinds) {
    const bool any = std::any_of(t.boxes.begin(), t.boxes.end(),
                                 [&](const TimelineBox& b) { return b.kind == k.name; });
    if (!any) continue;  // an empty datablock would be a gnuplot warning and a stray key entry
    const bool comm = std::string(k.name) == "comm";
    plots += std::string(plots.empty() ? "" : ", \\\n     ") + "$" + k.name +
             " using 1:2:3:4 with boxxyerror fs " + (comm ? "transparent solid 0.55" : "solid 1.0") +
             " noborder lc rgb '" + k.colour + "' title '" + k.title + "'";
  }
  g << "plot " << plots << "\n";
  return g.str();
}

std::string plot_trace(const std::string& run_dir, const TracePlotOptions& options) {
  const fs::path given(run_dir);
  const fs::path trace = fs::is_regular_file(given) ? given : given / "trace.json";
  if (options.width < 200) {
    throw std::invalid_argument("--width must be >= 200 pixels, got " +
                                std::to_string(options.width));
  }
  const Timeline t = read_timeline(trace.string());
  const fs::path png = options.out.empty() ? trace.parent_path() / "trace.png" : fs::path(options.out);
  // The path goes into a gnuplot string, where a quote would end it and a backtick run a command.
  if (png.string().find_first_of("'`\r\n") != std::string::npos) {
    throw std::runtime_error(png.string() + ": a quote, backtick or newline in the output path "
                             "cannot be handed to gnuplot");
  }
  fs::path script = png;
  script.replace_extension(".gp");
  if (script == png) script += ".gp";
  {
    std::ofstream s(script, std::ios::trunc);
    s << timeline_script(t, png.string(), options.width);
    s.close();
    if (!s) throw std::runtime_error(script.string() + ": cannot write the gnuplot script");
  }
  ProcessResult r;
  try {
    r = run_process({"gnuplot", script.string()}, false);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (gnuplot draws the timeline; Debian: apt-get install gnuplot-nox)");
  }
  if (r.status != 0) {
    throw std::runtime_error("gnuplot " + script.string() + " failed (exit status " +
                             std::to_string(r.status) + ")");
  }
  return png.string();
}

}  // namespace tessera::cluster
