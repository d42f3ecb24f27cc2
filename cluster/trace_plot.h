// `tessera trace plot`: a PNG timeline of a run's Chrome trace (trainer/chrome_trace.h), so that
// one can SEE whether communication overlaps compute. One band per rank (rank 0 on top), each
// with a compute row (pieces coloured by kind: F, B, W by the name's first word, e.g. "B experts";
// anything else is "other") above a communication row (every
// "comm:*" lane's operations, half transparent, so that overlapping operations look darker);
// time on x in milliseconds from the trace's first event.
//
// Drawn by gnuplot (Debian: gnuplot-nox), like the sweep report's plots: it gives axes, ticks,
// labels and a legend without a font renderer of our own. The events go into the script as
// datablocks drawn `with boxxyerror` (one plot command however many events; `set object` per
// event slows gnuplot down on large traces). The script is kept next to the PNG (FILE.gp) to be
// edited and rerun.
#pragma once

#include <string>
#include <vector>

namespace tessera::cluster {

// One drawn piece of a trace.
struct TimelineBox {
  int pid = 0;             // rank
  bool comm = false;       // communication row (else compute)
  std::string kind;        // "F", "B", "W", "other" (compute) or "comm"
  double start_ms = 0;     // from the trace's first event
  double duration_ms = 0;
};

struct Timeline {
  std::vector<int> pids;                  // ranks in the trace, ascending
  std::vector<std::string> process_names; // per pids[i]: "rank 1 (pp=0, dp=1, ep=1)"
  std::vector<TimelineBox> boxes;
  double end_ms = 0;                      // last event's end
};

// Reads a Chrome trace file. Throws std::runtime_error naming `path` when it cannot be read, is
// not a trace-event JSON object, or holds no complete ("ph": "X") events.
Timeline read_timeline(const std::string& path);

// The gnuplot script that draws `t` into `png` (width px wide; the height follows the ranks).
std::string timeline_script(const Timeline& t, const std::string& png, int width);

struct TracePlotOptions {
  std::string out;   // PNG path. Default: RUN_DIR/trace.png
  int width = 1600;  // pixels, >= 200
};

// Plots RUN_DIR/trace.json (run_dir may also name the JSON file itself); returns the PNG's path.
// Throws std::runtime_error naming the trace file (unreadable, malformed, empty) or saying that
// gnuplot is missing or failed.
std::string plot_trace(const std::string& run_dir, const TracePlotOptions& options);

}  // namespace tessera::cluster
