// Chrome trace files (the trace-event format read by chrome://tracing and ui.perfetto.dev) from
// the events of parallel::TraceRecorder: one document per rank, and their merge.
//
// A document is a JSON object {"traceEvents": [...], "displayTimeUnit": "ms"}. Events are
// complete events ("ph": "X") with "ts"/"dur" in microseconds from the recorder's origin,
// "pid" = world rank, "tid" = lane id, "cat" = "comm" on "comm:" lanes else "compute", "args" = the event's integer
// args. Metadata events name the process ("rank 3 (pp=1, dp=1, ep=1)") and the lanes
// ("compute", "comm:ep"). Operations of one communicator may overlap (gradient buckets in
// flight together), which Chrome cannot draw on one thread: the k-th overlapping row of lane L
// gets tid L + 1000 * k, named "<lane> #<k+1>". Nested events (a layer inside an F) stay on
// their row.
//
// Merging: rank 0 gathers the other ranks' documents over the world communicator (not from
// their files), so the merge needs no file system shared between nodes (nor one whose writes
// another node sees at once) and runs on the in-process fake communicator in tests.
#pragma once

#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/trace_recorder.h"

namespace tessera::trainer {

// One rank's document (`lanes` as TraceRecorder::lanes(); `pid` the world rank).
std::string chrome_trace_json(const std::vector<parallel::TraceEvent>& events,
                              const std::vector<std::string>& lanes, int pid,
                              const std::string& process_name);

// One document holding the events of every input document (each as chrome_trace_json writes
// it). Throws std::runtime_error naming `sources[i]` when document i is not such a document.
std::string merge_chrome_traces(const std::vector<std::string>& documents,
                                const std::vector<std::string>& sources);

struct ChromeTraceFiles {
  std::string rank_file;  // run_dir/trace/rank-NNNNN.json (every rank)
  std::string merged;     // run_dir/trace.json (world rank 0; "" elsewhere)
};

// Collective over `world` (every rank calls it): writes this rank's recorded events to
// run_dir/trace/rank-NNNNN.json (NNNNN = world rank) and, on rank 0, the merge of every rank's
// document to run_dir/trace.json. Throws std::runtime_error naming a file that cannot be
// written (after taking part in the gather, so that no peer is left waiting).
ChromeTraceFiles write_chrome_traces(parallel::Comm& world,
                                     const parallel::TraceRecorder& recorder,
                                     const std::string& process_name, const std::string& run_dir);

}  // namespace tessera::trainer
