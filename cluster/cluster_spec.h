// Cluster description: what the planner (cluster/plan.h) knows about the machines a recipe runs
// on. One YAML file per cluster (recipes/clusters/): published specifications for GPU clusters,
// `tessera plan calibrate` measurements for this machine. Every number is per device (one rank).
//
//   name: h800-2048
//   nodes: 256
//   gpus_per_node: 8                 # ranks per node
//   device:
//     name: NVIDIA H800 SXM5
//     kind: gpu                      # gpu | cpu: cpu attention keeps its (T, T) probabilities
//     peak_tflops: {fp32: 67, bf16: 989, fp8: 1979}   # dense, no sparsity
//     memory_gib: 80
//     memory_gbs: 3350               # device memory bandwidth, GB/s
//     node_cores: 2                  # optional, kind cpu: the cores a node's ranks share
//     gemm:                          # optional: measured GEMM throughput by shape and precision
//       - {precision: fp8, layout: nt, m: 8192, n: 4096, k: 7168, tflops: 1297}
//     attention:                     # optional: measured causal attention core (FLOPs as
//       - {seq_len: 256, head_dim: 32, forward_tflops: 0.02, backward_tflops: 0.015}  # flop_count.h)
//   network:
//     intra_node_gbs: 160            # effective, per device, one direction
//     inter_node_gbs: 40
//     intra_node_latency_us: 3
//     inter_node_latency_us: 5
//     all_to_all:                    # optional: measured effective per-rank all-to-all
//       - {ranks: 4, bytes_per_rank: 1048576, gbs: 2.1}
//     reduce_scatter:                # optional: measured ZeRO collectives inside a node, fp32
//       - {ranks: 2, bytes: 16777216, gbs: 1.8}    # bytes: the whole buffer; gbs = bytes / s
//     all_gather:
//       - {ranks: 2, bytes: 16777216, gbs: 3.5}
//     sync_loss:                     # optional, measured: seconds an exchange after phase_s of
//       - {ranks: 4, phase_s: 0.008, loss_s: 0.0012}   # compute loses to the ranks' spread
//
// GEMMs without a measured point of their precision run at the peak (the planner says so); with
// points, a GEMM runs at the throughput of the nearest measured shape of its precision (log-distance
// over m, n, k; its own layout preferred: nt forward, nn input gradient, tn weight gradient, as in
// trainer/flop_count.h). The attention core likewise (nearest seq_len and head_dim), else it runs
// at the fp32 GEMM rate of its shape.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::cluster {

class ClusterSpecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GemmPoint {
  std::string precision;  // fp32 | bf16 | fp8
  std::string layout = "nt";  // nt | nn | tn
  int64_t m = 0, n = 0, k = 0;
  double tflops = 0.0;
};

struct AttentionPoint {
  int64_t seq_len = 0, head_dim = 0;
  double forward_tflops = 0.0, backward_tflops = 0.0;
};

struct AllToAllPoint {
  int64_t ranks = 0;
  int64_t bytes_per_rank = 0;  // what each rank sends in total, its own slice included (as the
                               // expert dispatch posts it), split evenly over the group
  double gbs = 0.0;            // bytes_per_rank / seconds, GB/s
};

// A measured ZeRO collective (network.reduce_scatter / network.all_gather) over `ranks`
// consecutive ranks of one node.
struct CollectivePoint {
  int64_t ranks = 0;
  int64_t bytes = 0;  // the whole buffer: every rank's slices together
  double gbs = 0.0;   // bytes / seconds, GB/s
};

// What a rank loses at each exchange that ends a phase of `phase_s` seconds of compute, beyond
// the work and the exchange priced: the group's ranks do not finish a phase together (an EP
// group at its expert exchanges, a data-parallel group at ZeRO's last reduce-scatter).
struct SyncLossPoint {
  int64_t ranks = 0;   // the group that synchronises
  double phase_s = 0;  // compute since the group's previous exchange
  double loss_s = 0;
};

struct DeviceSpec {
  std::string name;
  std::string kind = "gpu";  // gpu | cpu
  double peak_tflops_fp32 = 0.0, peak_tflops_bf16 = 0.0, peak_tflops_fp8 = 0.0;
  double memory_gib = 0.0;
  double memory_gbs = 0.0;
  int64_t node_cores = 0;  // kind cpu: the cores a node's ranks share (0: not given)
  std::vector<GemmPoint> gemm;
  std::vector<AttentionPoint> attention;

  double peak_tflops(const std::string& precision) const;  // fp32 | bf16 | fp8
};

struct NetworkSpec {
  double intra_node_gbs = 0.0, inter_node_gbs = 0.0;
  double intra_node_latency_us = 0.0, inter_node_latency_us = 0.0;
  std::vector<AllToAllPoint> all_to_all;
  std::vector<CollectivePoint> reduce_scatter, all_gather;
  std::vector<SyncLossPoint> sync_loss;
};

struct ClusterSpec {
  std::string source;  // the file it was loaded from ("" when built in code)
  std::string name;
  int64_t nodes = 1;
  int64_t gpus_per_node = 1;
  DeviceSpec device;
  NetworkSpec network;

  int64_t devices() const { return nodes * gpus_per_node; }
};

// Throws ClusterSpecError naming the file and the dotted key (unknown keys, wrong types, values out
// of range, missing required keys).
ClusterSpec load_cluster_spec(const std::string& path);

// What an exchange in a group of `ranks` waits beyond the work priced, after `phase_s` of compute:
// from network.sync_loss's points of that group size, linear in the phase between the measured
// phases and from 0 at no compute, the longest phase's loss beyond it. 0 for a group size with
// no points (*measured, when given, says whether it has some): the loss of one group size says
// nothing of another's where ranks time-share cores (cluster/plan_calibrate_command.cc).
double sync_loss_s(const NetworkSpec& network, int64_t ranks, double phase_s,
                   bool* measured = nullptr);

// The same format, loadable by load_cluster_spec; `comment` lines are written first as "# ...".
std::string cluster_spec_to_yaml(const ClusterSpec& spec, const std::vector<std::string>& comment);

}  // namespace tessera::cluster
