// calibration_check FILE RANKS PRECISIONS RECIPE...: checks a cluster description written by
// `tessera plan calibrate` on RANKS ranks for the RECIPEs (tests/cluster/plan_calibrate_test.sh):
// it loads with load_cluster_spec; one node of RANKS cpu devices; every number positive; a GEMM
// point for every trainer::gemm_shapes() of every recipe's micro-batch at fp32, and for those that
// run at the block precision at each of PRECISIONS (comma-separated); an attention point per
// recipe; all-to-all points for every group size, and synchronisation-loss points for each
// where the ranks have a core each (the largest only where they time-share). Prints one line per
// failure; exit 1 if any.
#include <iostream>
#include <sstream>

#include "cluster/calibration.h"
#include "cluster/cluster_spec.h"
#include "trainer/flop_count.h"

using namespace tessera;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: calibration_check FILE RANKS PRECISIONS RECIPE...\n";
    return 2;
  }
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::cout << "FAIL: " << what << "\n";
    ++failures;
  };
  cluster::ClusterSpec spec;
  try {
    spec = cluster::load_cluster_spec(argv[1]);
  } catch (const std::exception& e) {
    std::cout << "FAIL: " << e.what() << "\n";
    return 1;
  }
  const int ranks = std::stoi(argv[2]);
  std::vector<std::string> precisions;
  std::stringstream list(argv[3]);
  for (std::string p; std::getline(list, p, ',');) precisions.push_back(p);

  if (spec.nodes != 1) fail("nodes " + std::to_string(spec.nodes) + ", expected 1");
  if (spec.gpus_per_node != ranks) fail("gpus_per_node " + std::to_string(spec.gpus_per_node));
  const cluster::DeviceSpec& d = spec.device;
  if (d.kind != "cpu") fail("device.kind " + d.kind);
  if (d.name.empty()) fail("device.name empty");
  for (double x : {d.peak_tflops_fp32, d.peak_tflops_bf16, d.peak_tflops_fp8, d.memory_gib,
                   d.memory_gbs}) {
    if (!(x > 0)) fail("device number not positive: " + std::to_string(x));
  }
  const cluster::NetworkSpec& n = spec.network;
  for (double x : {n.intra_node_gbs, n.inter_node_gbs, n.intra_node_latency_us,
                   n.inter_node_latency_us}) {
    if (!(x > 0)) fail("network number not positive: " + std::to_string(x));
  }
  for (const cluster::GemmPoint& g : d.gemm) {
    if (!(g.tflops > 0)) fail("gemm point not positive");
    if (g.tflops > d.peak_tflops(g.precision)) fail("a " + g.precision + " point exceeds the peak");
  }
  auto has_gemm = [&](const std::string& precision, const trainer::GemmShape& s) {
    for (const cluster::GemmPoint& g : d.gemm) {
      if (g.precision == precision && g.layout == s.layout && g.m == s.m && g.n == s.n &&
          g.k == s.k) {
        return true;
      }
    }
    return false;
  };
  for (int i = 4; i < argc; ++i) {
    const trainer::Recipe r = trainer::load_recipe(argv[i]);
    for (const trainer::GemmShape& s :
         trainer::gemm_shapes(r.model, cluster::micro_batch_tokens(r))) {
      const std::string shape =
          s.layout + " " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
      for (const std::string& p : precisions) {
        if ((p == "fp32" || s.block_precision) && !has_gemm(p, s)) {
          fail(std::string(argv[i]) + ": no " + p + " gemm point for " + shape);
        }
      }
    }
    const int64_t head_dim = r.model.attention == "mla"
                                 ? r.model.qk_nope_head_dim + r.model.qk_rope_head_dim
                                 : r.model.dim / r.model.n_heads;
    bool attention = false;
    for (const cluster::AttentionPoint& a : d.attention) {
      attention |= a.seq_len == r.train.seq_len && a.head_dim == head_dim &&
                   a.forward_tflops > 0 && a.backward_tflops > 0;
    }
    if (!attention) fail(std::string(argv[i]) + ": no attention point");
  }
  for (int g : cluster::all_to_all_group_sizes(ranks)) {
    bool found = false;
    for (const cluster::AllToAllPoint& a : n.all_to_all) found |= a.ranks == g && a.gbs > 0;
    if (!found) fail("no all_to_all point for " + std::to_string(g) + " ranks");
    // Every group size where the ranks (one thread each here) have a core each; where they
    // time-share the cores, the largest only.
    bool sync = false;
    for (const cluster::SyncLossPoint& p : n.sync_loss) sync |= p.ranks == g && p.phase_s > 0;
    const bool expected =
        ranks <= d.node_cores || g == cluster::all_to_all_group_sizes(ranks).back();
    if (sync != expected) {
      fail(std::string(expected ? "no" : "a") + " sync_loss point for " + std::to_string(g) +
           " ranks (" + std::to_string(ranks) + " ranks on " + std::to_string(d.node_cores) +
           " cores)");
    }
    for (const auto& [kind, points] : {std::pair{"reduce_scatter", &n.reduce_scatter},
                                       std::pair{"all_gather", &n.all_gather}}) {
      bool measured = false;
      for (const cluster::CollectivePoint& c : *points) measured |= c.ranks == g && c.gbs > 0;
      if (!measured) fail(std::string("no ") + kind + " point for " + std::to_string(g) + " ranks");
    }
  }
  if (failures == 0) std::cout << "calibration_check: " << argv[1] << " OK\n";
  return failures == 0 ? 0 : 1;
}
