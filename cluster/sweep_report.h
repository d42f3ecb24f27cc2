// `tessera sweep report DIR`: one CSV row per sweep point and PNG plots (gnuplot).
//
// Reads DIR/points/<i>/{recipe.yaml,overrides.txt,run/metrics.jsonl}. Per point: tokens/s is the
// median over the logged steps after the first (warm-up; a restart's steps count once, the last
// record of each step wins); bubble, exposed comm and comm are means over the same steps; final
// loss is the last step's loss. Scaling efficiency is tokens/s per rank over that of the point with
// the smallest world size (strong and weak scaling alike). MFU needs the peak FLOP rate of one
// rank (ReportOptions::peak_gflops_per_rank); model FLOPs per token are 6 * (matmul weights a token
// passes through) + 6 * n_layers * dim * seq_len (causal attention). Peak memory is the largest
// `peak_rss_mib` in metrics.jsonl if the trainer logs it.
// Writes DIR/report.csv, DIR/report-notes.txt, DIR/throughput.png, DIR/scaling_efficiency.png,
// DIR/loss.png (data and gnuplot script under DIR/report/).
#pragma once

#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::cluster {

struct ReportOptions {
  double peak_gflops_per_rank = 0;  // 0 = unknown: the MFU column stays empty
  bool plots = true;                // run gnuplot
};

// Training FLOPs per token (forward + backward) of `recipe`'s model, as described above.
double model_flops_per_token(const trainer::Recipe& recipe);

// Returns the notes (also written to report-notes.txt). Throws std::runtime_error when DIR has no
// points or gnuplot fails.
std::vector<std::string> write_sweep_report(const std::string& dir, const ReportOptions& options);

}  // namespace tessera::cluster
