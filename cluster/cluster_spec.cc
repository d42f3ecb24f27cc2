#include "cluster/cluster_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <set>

namespace tessera::cluster {
namespace {

// Reads one YAML map, key by key: every key must be known, required ones present, and messages
// name the file, the dotted key and the line.
class MapReader {
 public:
  MapReader(const std::string& source, std::string prefix, const YAML::Node& node)
      : source_(source), prefix_(std::move(prefix)), node_(node) {
    if (!node.IsMap()) fail(prefix_.empty() ? "(top level)" : prefix_.substr(0, prefix_.size() - 1),
                            "expected a map", node.Mark());
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what,
                         const YAML::Mark& mark) const {
    throw ClusterSpecError(source_ + ": " + key + ": " + what + " (line " +
                           std::to_string(mark.line + 1) + ")");
  }

  const YAML::Node* find(const std::string& key, bool required) {
    seen_.insert(key);
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) {
      if (required) fail(prefix_ + key, "required", node_.Mark());
      return nullptr;
    }
    held_.push_back(v);
    return &held_.back();
  }

  // A finite number > 0 (>= 0 with zero_ok).
  double number(const std::string& key, bool required, bool zero_ok = false) {
    const YAML::Node* v = find(key, required);
    if (!v) return 0;
    double x = 0;
    try {
      if (!v->IsScalar()) throw YAML::Exception(v->Mark(), "");
      x = v->as<double>();
    } catch (const YAML::Exception&) {
      fail(prefix_ + key, "expected a number", v->Mark());
    }
    if (!std::isfinite(x) || x < 0 || (x == 0 && !zero_ok)) {
      fail(prefix_ + key, std::string("must be a finite number ") + (zero_ok ? ">= 0" : "> 0") +
                              ", got " + v->Scalar(), v->Mark());
    }
    return x;
  }

  int64_t integer(const std::string& key, bool required, int64_t min, int64_t fallback = 0) {
    const YAML::Node* v = find(key, required);
    if (!v) return fallback;
    int64_t x = 0;
    try {
      if (!v->IsScalar()) throw YAML::Exception(v->Mark(), "");
      x = v->as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(prefix_ + key, "expected an integer", v->Mark());
    }
    if (x < min) {
      fail(prefix_ + key, "must be >= " + std::to_string(min) + ", got " + v->Scalar(), v->Mark());
    }
    return x;
  }

  std::string text(const std::string& key, bool required, const std::set<std::string>& allowed = {},
                   const std::string& fallback = "") {
    const YAML::Node* v = find(key, required);
    if (!v) return fallback;
    if (!v->IsScalar() || v->Scalar().empty()) fail(prefix_ + key, "expected a string", v->Mark());
    if (!allowed.empty() && !allowed.count(v->Scalar())) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : " | ") + a;
      fail(prefix_ + key, "must be " + list + ", got '" + v->Scalar() + "'", v->Mark());
    }
    return v->Scalar();
  }

  // Each element of a list of maps, read by `each`.
  void list(const std::string& key, const std::function<void(MapReader&)>& each) {
    const YAML::Node* v = find(key, false);
    if (!v) return;
    if (!v->IsSequence()) fail(prefix_ + key, "expected a list of maps", v->Mark());
    for (size_t i = 0; i < v->size(); ++i) {
      MapReader item(source_, prefix_ + key + "[" + std::to_string(i) + "].", (*v)[i]);
      each(item);
      item.done();
    }
  }

  MapReader section(const std::string& key, bool required) {
    const YAML::Node* v = find(key, required);
    return MapReader(source_, prefix_ + key + ".", v ? *v : YAML::Node(YAML::NodeType::Map));
  }

  // Every key of the map was read: anything else is unknown.
  void done() const {
    for (const auto& kv : node_) {
      const std::string k = kv.first.Scalar();
      if (!seen_.count(k)) fail(prefix_ + k, "unknown key", kv.first.Mark());
    }
  }

 private:
  std::string source_, prefix_;
  YAML::Node node_;
  std::set<std::string> seen_;
  std::deque<YAML::Node> held_;  // the nodes find() returned (stable addresses)
};

const std::set<std::string> kPrecisions = {"fp32", "bf16", "fp8"};

}  // namespace

double DeviceSpec::peak_tflops(const std::string& precision) const {
  if (precision == "bf16") return peak_tflops_bf16;
  if (precision == "fp8") return peak_tflops_fp8;
  return peak_tflops_fp32;
}

ClusterSpec load_cluster_spec(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ClusterSpecError(path + ": cannot open cluster file");
  } catch (const YAML::Exception& e) {
    throw ClusterSpecError(path + ": YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                           ": " + e.msg);
  }
  ClusterSpec spec;
  spec.source = path;
  MapReader top(path, "", root);
  spec.name = top.text("name", true);
  spec.nodes = top.integer("nodes", true, 1);
  spec.gpus_per_node = top.integer("gpus_per_node", true, 1);

  MapReader device = top.section("device", true);
  DeviceSpec& d = spec.device;
  d.name = device.text("name", true);
  d.kind = device.text("kind", false, {"gpu", "cpu"}, "gpu");
  MapReader peak = device.section("peak_tflops", true);
  d.peak_tflops_fp32 = peak.number("fp32", true);
  d.peak_tflops_bf16 = peak.number("bf16", true);
  d.peak_tflops_fp8 = peak.number("fp8", true);
  peak.done();
  d.memory_gib = device.number("memory_gib", true);
  d.memory_gbs = device.number("memory_gbs", true);
  d.node_cores = device.integer("node_cores", false, 1);
  device.list("gemm", [&](MapReader& g) {
    GemmPoint p;
    p.precision = g.text("precision", true, kPrecisions);
    p.layout = g.text("layout", false, {"nt", "nn", "tn"}, "nt");
    p.m = g.integer("m", true, 1);
    p.n = g.integer("n", true, 1);
    p.k = g.integer("k", true, 1);
    p.tflops = g.number("tflops", true);
    d.gemm.push_back(p);
  });
  device.list("attention", [&](MapReader& a) {
    AttentionPoint p;
    p.seq_len = a.integer("seq_len", true, 1);
    p.head_dim = a.integer("head_dim", true, 1);
    p.forward_tflops = a.number("forward_tflops", true);
    p.backward_tflops = a.number("backward_tflops", true);
    d.attention.push_back(p);
  });
  device.done();

  MapReader network = top.section("network", true);
  NetworkSpec& n = spec.network;
  n.intra_node_gbs = network.number("intra_node_gbs", true);
  n.inter_node_gbs = network.number("inter_node_gbs", true);
  n.intra_node_latency_us = network.number("intra_node_latency_us", true, true);
  n.inter_node_latency_us = network.number("inter_node_latency_us", true, true);
  network.list("all_to_all", [&](MapReader& a) {
    AllToAllPoint p;
    p.ranks = a.integer("ranks", true, 2);
    p.bytes_per_rank = a.integer("bytes_per_rank", true, 1);
    p.gbs = a.number("gbs", true);
    n.all_to_all.push_back(p);
  });
  for (const auto& [kind, points] : {std::pair{"reduce_scatter", &n.reduce_scatter},
                                     std::pair{"all_gather", &n.all_gather}}) {
    network.list(kind, [&](MapReader& a) {
      CollectivePoint p;
      p.ranks = a.integer("ranks", true, 2);
      p.bytes = a.integer("bytes", true, 1);
      p.gbs = a.number("gbs", true);
      points->push_back(p);
    });
  }
  network.list("sync_loss", [&](MapReader& a) {
    SyncLossPoint p;
    p.ranks = a.integer("ranks", true, 2);
    p.phase_s = a.number("phase_s", true);
    p.loss_s = a.number("loss_s", true, true);
    n.sync_loss.push_back(p);
  });
  network.done();
  top.done();
  return spec;
}

double sync_loss_s(const NetworkSpec& network, int64_t ranks, double phase_s, bool* measured) {
  std::vector<SyncLossPoint> points;
  for (const SyncLossPoint& p : network.sync_loss) {
    if (p.ranks == ranks) points.push_back(p);
  }
  if (measured != nullptr) *measured = !points.empty();
  if (points.empty() || !(phase_s > 0)) return 0.0;
  std::sort(points.begin(), points.end(),
            [](const SyncLossPoint& a, const SyncLossPoint& b) { return a.phase_s < b.phase_s; });
  SyncLossPoint before{ranks, 0.0, 0.0};
  for (const SyncLossPoint& p : points) {
    if (phase_s <= p.phase_s) {
      const double f = (phase_s - before.phase_s) / (p.phase_s - before.phase_s);
      return before.loss_s + f * (p.loss_s - before.loss_s);
    }
    before = p;
  }
  return before.loss_s;
}

namespace {
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", x);
  return buf;
}
}  // namespace

std::string cluster_spec_to_yaml(const ClusterSpec& s, const std::vector<std::string>& comment) {
  std::string out;
  for (const std::string& line : comment) out += "# " + line + "\n";
  YAML::Emitter name;
  name << s.name;
  YAML::Emitter device_name;
  device_name << s.device.name;
  out += "name: " + std::string(name.c_str()) + "\n";
  out += "nodes: " + std::to_string(s.nodes) + "\n";
  out += "gpus_per_node: " + std::to_string(s.gpus_per_node) + "\n";
  const DeviceSpec& d = s.device;
  out += "device:\n";
  out += "  name: " + std::string(device_name.c_str()) + "\n";
  out += "  kind: " + d.kind + "\n";
  out += "  peak_tflops: {fp32: " + num(d.peak_tflops_fp32) + ", bf16: " + num(d.peak_tflops_bf16) +
         ", fp8: " + num(d.peak_tflops_fp8) + "}\n";
  out += "  memory_gib: " + num(d.memory_gib) + "\n";
  out += "  memory_gbs: " + num(d.memory_gbs) + "\n";
  if (d.node_cores > 0) out += "  node_cores: " + std::to_string(d.node_cores) + "\n";
  if (!d.gemm.empty()) {
    out += "  gemm:\n";
    for (const GemmPoint& g : d.gemm) {
      out += "    - {precision: " + g.precision + ", layout: " + g.layout + ", m: " +
             std::to_string(g.m) + ", n: " + std::to_string(g.n) + ", k: " + std::to_string(g.k) +
             ", tflops: " + num(g.tflops) + "}\n";
    }
  }
  if (!d.attention.empty()) {
    out += "  attention:\n";
    for (const AttentionPoint& a : d.attention) {
      out += "    - {seq_len: " + std::to_string(a.seq_len) + ", head_dim: " +
             std::to_string(a.head_dim) + ", forward_tflops: " + num(a.forward_tflops) +
             ", backward_tflops: " + num(a.backward_tflops) + "}\n";
    }
  }
  const NetworkSpec& n = s.network;
  out += "network:\n";
  out += "  intra_node_gbs: " + num(n.intra_node_gbs) + "\n";
  out += "  inter_node_gbs: " + num(n.inter_node_gbs) + "\n";
  out += "  intra_node_latency_us: " + num(n.intra_node_latency_us) + "\n";
  out += "  inter_node_latency_us: " + num(n.inter_node_latency_us) + "\n";
  if (!n.all_to_all.empty()) {
    out += "  all_to_all:\n";
    for (const AllToAllPoint& a : n.all_to_all) {
      out += "    - {ranks: " + std::to_string(a.ranks) + ", bytes_per_rank: " +
             std::to_string(a.bytes_per_rank) + ", gbs: " + num(a.gbs) + "}\n";
    }
  }
  for (const auto& [kind, points] : {std::pair{"reduce_scatter", &n.reduce_scatter},
                                     std::pair{"all_gather", &n.all_gather}}) {
    if (points->empty()) continue;
    out += std::string("  ") + kind + ":\n";
    for (const CollectivePoint& c : *points) {
      out += "    - {ranks: " + std::to_string(c.ranks) + ", bytes: " + std::to_string(c.bytes) +
             ", gbs: " + num(c.gbs) + "}\n";
    }
  }
  if (!n.sync_loss.empty()) {
    out += "  sync_loss:\n";
    for (const SyncLossPoint& p : n.sync_loss) {
      out += "    - {ranks: " + std::to_string(p.ranks) + ", phase_s: " + num(p.phase_s) +
             ", loss_s: " + num(p.loss_s) + "}\n";
    }
  }
  return out;
}

}  // namespace tessera::cluster
