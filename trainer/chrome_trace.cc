#include "trainer/chrome_trace.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

namespace tessera::trainer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kRowTidStride = 1000;  // tid of row k of lane L: L + kRowTidStride * k

// Assigns each event a row of its lane such that the events of a row either follow one another
// or nest (Chrome draws nothing else on one thread). Returns the row of every event.
std::vector<int> pack_rows(const std::vector<parallel::TraceEvent>& events) {
  std::vector<size_t> order(events.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Outer events first where two start together, so that the inner one nests.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = events[a];
    const auto& y = events[b];
    if (x.lane != y.lane) return x.lane < y.lane;
    if (x.start_us != y.start_us) return x.start_us < y.start_us;
    return x.duration_us > y.duration_us;
  });
  // Events that touch may differ in the last bits of start + duration (the planner's sums):
  // they still follow one another.
  constexpr double kTouchUs = 1e-6;
  std::vector<int> row(events.size(), 0);
  std::vector<std::vector<double>> open;  // per row of the current lane: ends of enclosing events
  int lane = -1;
  for (size_t i : order) {
    const auto& e = events[i];
    if (e.lane != lane) lane = e.lane, open.clear();
    const double end = e.start_us + e.duration_us;
    size_t r = 0;
    for (; r < open.size(); ++r) {
      std::vector<double>& stack = open[r];
      while (!stack.empty() && stack.back() <= e.start_us + kTouchUs) stack.pop_back();
      if (stack.empty() || end <= stack.back() + kTouchUs) break;
    }
    if (r == open.size()) open.emplace_back();
    open[r].push_back(end);
    row[i] = static_cast<int>(r);
  }
  return row;
}

json metadata(const char* name, int pid, int tid, json args) {
  return json{{"name", name}, {"ph", "M"}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}};
}

void write_file(const fs::path& path, const std::string& text) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw std::runtime_error("cannot write the trace file " + tmp.string());
  }
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot write the trace file " + path.string() + ": " + ec.message());
}

// Every rank's `text` on `root` (in rank order); empty elsewhere. Collective: the lengths go
// round in an all_gather, then the bytes, packed into 32-bit words, in an all_to_all_v whose
// only non-empty blocks go to root.
std::vector<std::string> gather_strings(parallel::Comm& comm, const std::string& text, int root) {
  const int n = comm.size();
  std::vector<int64_t> lengths(n);
  const int64_t mine = static_cast<int64_t>(text.size());
  comm.all_gather<int64_t>(std::span<const int64_t>(&mine, 1), lengths).wait();
  auto words = [](int64_t bytes) { return (bytes + 3) / 4; };
  std::vector<uint32_t> send(words(mine), 0);
  if (mine > 0) std::memcpy(send.data(), text.data(), text.size());
  parallel::AllToAllVOptions o;
  o.send_counts.assign(n, 0);
  o.recv_counts.assign(n, 0);
  o.send_counts[root] = words(mine);
  int64_t total = 0;
  if (comm.rank() == root) {
    for (int r = 0; r < n; ++r) total += o.recv_counts[r] = words(lengths[r]);
  }
  std::vector<uint32_t> recv(total);
  comm.all_to_all_v<uint32_t>(send, recv, o).wait();
  std::vector<std::string> out;
  if (comm.rank() != root) return out;
  const char* bytes = reinterpret_cast<const char*>(recv.data());
  for (int r = 0; r < n; ++r) {
    out.emplace_back(bytes, static_cast<size_t>(lengths[r]));
    bytes += 4 * words(lengths[r]);
  }
  return out;
}

}  // namespace

std::string chrome_trace_json(const std::vector<parallel::TraceEvent>& events,
                              const std::vector<std::string>& lanes, int pid,
                              const std::string& process_name) {
  const std::vector<int> rows = pack_rows(events);
  json trace_events = json::array();
  trace_events.push_back(metadata("process_name", pid, 0, {{"name", process_name}}));
  trace_events.push_back(metadata("process_sort_index", pid, 0, {{"sort_index", pid}}));
  std::vector<int> rows_of_lane(lanes.size(), 1);
  for (size_t i = 0; i < events.size(); ++i) {
    const parallel::TraceEvent& e = events[i];
    if (e.lane < 0 || static_cast<size_t>(e.lane) >= lanes.size()) {
      throw std::logic_error("chrome_trace_json: event '" + e.name + "' on unknown lane " +
                             std::to_string(e.lane));
    }
    rows_of_lane[e.lane] = std::max(rows_of_lane[e.lane], rows[i] + 1);
    json args = json::object();
    for (const auto& [key, value] : e.args) args[key] = value;
    trace_events.push_back({{"name", e.name},
                            {"cat", lanes[e.lane].rfind("comm:", 0) == 0 ? "comm" : "compute"},
                            {"ph", "X"},
                            {"ts", e.start_us},
                            {"dur", e.duration_us},
                            {"pid", pid},
                            {"tid", e.lane + kRowTidStride * rows[i]},
                            {"args", std::move(args)}});
  }
  for (size_t lane = 0; lane < lanes.size(); ++lane) {
    for (int r = 0; r < rows_of_lane[lane]; ++r) {
      const int tid = static_cast<int>(lane) + kRowTidStride * r;
      const std::string name = r == 0 ? lanes[lane] : lanes[lane] + " #" + std::to_string(r + 1);
      trace_events.push_back(metadata("thread_name", pid, tid, {{"name", name}}));
      // Rows of one lane side by side, lanes in registration order (compute first).
      trace_events.push_back(metadata("thread_sort_index", pid, tid,
                                      {{"sort_index", static_cast<int>(lane) * kRowTidStride + r}}));
    }
  }
  return json{{"traceEvents", std::move(trace_events)}, {"displayTimeUnit", "ms"}}.dump();
}

std::string merge_chrome_traces(const std::vector<std::string>& documents,
                                const std::vector<std::string>& sources) {
  if (documents.size() != sources.size()) {
    throw std::logic_error("merge_chrome_traces: " + std::to_string(documents.size()) +
                           " documents but " + std::to_string(sources.size()) + " sources");
  }
  json merged = json::array();
  for (size_t i = 0; i < documents.size(); ++i) {
    json doc;
    try {
      doc = json::parse(documents[i]);
    } catch (const json::parse_error& e) {
      throw std::runtime_error(sources[i] + ": not JSON: " + e.what());
    }
    if (!doc.is_object() || !doc.contains("traceEvents") || !doc["traceEvents"].is_array()) {
      throw std::runtime_error(sources[i] + ": not a Chrome trace (no \"traceEvents\" array)");
    }
    for (json& e : doc["traceEvents"]) merged.push_back(std::move(e));
  }
  return json{{"traceEvents", std::move(merged)}, {"displayTimeUnit", "ms"}}.dump();
}

ChromeTraceFiles write_chrome_traces(parallel::Comm& world, const parallel::TraceRecorder& recorder,
                                     const std::string& process_name, const std::string& run_dir) {
  const int rank = world.rank();
  const std::string doc = chrome_trace_json(recorder.events(), recorder.lanes(), rank, process_name);
  ChromeTraceFiles files;
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.json", rank);
  files.rank_file = (fs::path(run_dir) / "trace" / name).string();
  // A failed write is reported after the gather, so that no peer is left waiting in it.
  std::exception_ptr failure;
  try {
    write_file(files.rank_file, doc);
  } catch (...) {
    failure = std::current_exception();
  }
  const std::vector<std::string> docs = gather_strings(world, doc, 0);
  if (failure) std::rethrow_exception(failure);
  if (rank != 0) return files;
  std::vector<std::string> sources;
  for (int r = 0; r < world.size(); ++r) sources.push_back("the trace of rank " + std::to_string(r));
  files.merged = (fs::path(run_dir) / "trace.json").string();
  write_file(files.merged, merge_chrome_traces(docs, sources));
  return files;
}

}  // namespace tessera::trainer
