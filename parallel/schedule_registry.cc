#include "parallel/schedule_registry.h"

#include <algorithm>
#include <string>

#include "parallel/schedule_generators.h"

namespace tessera::parallel {
namespace {

std::string str(int v) { return std::to_string(v); }

// Schedules with one chunk per stage refuse virtual stages.
void require_one_chunk(const std::string& name, int v, const std::string& why) {
  if (v != 1) {
    throw ScheduleError("parallel.schedule=" + name + " " + why + " but parallel.virtual_stages=" +
                        str(v) + " (leave it at 1)");
  }
}

// Closed-form idle time of the most idle stage (ScheduleInfo::idle_time), per-chunk costs.
double loop_idle(int pp, int, int, const OpCosts& c) {
  return (pp - 1) * (c.forward + c.backward_input + c.backward_weight);
}
double zb1p_idle(int pp, int, int, const OpCosts& c) {
  return (pp - 1) * std::max({c.forward, c.backward_input,
                              c.forward + c.backward_input - c.backward_weight});
}

double loop_bubble(int pp, int m, int v) {
  const double p1 = pp - 1;
  return p1 / (static_cast<double>(v) * m + p1);
}

std::vector<ScheduleInfo> make_registry() {
  std::vector<ScheduleInfo> rows;
  const auto one_chunk_looped = [](int pp, int, int) { return Placement::looped(pp, 1); };
  const std::string needs_interleaved = "runs one chunk per stage (virtual stages need " +
                                        std::string("parallel.schedule=interleaved)");
  rows.push_back({
      "gpipe", "all forwards, then all backwards", "-",
      [=](int pp, int m, int v) {
        check_schedule_sizes("gpipe", pp, m);
        require_one_chunk("gpipe", v, needs_interleaved);
      },
      one_chunk_looped,
      [](int pp, int m, int) { return gpipe_schedule(pp, m); },
      [](int pp, int m, int, const OpCosts&) { return loop_bubble(pp, m, 1); },
      loop_idle,
  });
  rows.push_back({
      "1f1b", "one forward, one backward (PipeDream-flush, Megatron)", "-",
      [=](int pp, int m, int v) {
        check_schedule_sizes("1f1b", pp, m);
        require_one_chunk("1f1b", v, needs_interleaved);
      },
      one_chunk_looped,
      [](int pp, int m, int) { return one_f_one_b_schedule(pp, m); },
      [](int pp, int m, int, const OpCosts&) { return loop_bubble(pp, m, 1); },
      loop_idle,
  });
  rows.push_back({
      "interleaved", "Megatron's interleaved 1F1B over parallel.virtual_stages chunks per stage",
      "parallel.virtual_stages >= 2; parallel.micro_batches a multiple of parallel.pp",
      [](int pp, int m, int v) { check_interleaved(pp, m, v); },
      [](int pp, int, int v) { return Placement::looped(pp, v); },
      [](int pp, int m, int v) { return interleaved_schedule(pp, m, v); },
      [](int pp, int m, int v, const OpCosts&) { return loop_bubble(pp, m, v); },
      loop_idle,
  });
  rows.push_back({
      "zb1p", "zero-bubble ZB-H1: backward split into B and deferred W", "-",
      [=](int pp, int m, int v) {
        check_schedule_sizes("zb1p", pp, m);
        require_one_chunk("zb1p", v, needs_interleaved);
      },
      one_chunk_looped,
      [](int pp, int m, int) { return zb1p_schedule(pp, m); },
      [](int pp, int m, int v, const OpCosts& c) {
        const double idle = zb1p_idle(pp, m, v, c);
        const double total = idle + m * (c.forward + c.backward_input + c.backward_weight);
        return total > 0.0 ? idle / total : 0.0;
      },
      zb1p_idle,
  });
  rows.push_back({
      "dualpipev", "DeepSeek's DualPipeV: a V of 2 chunks per stage, forward/backward pairs overlapped",
      "parallel.micro_batches >= 2 x parallel.pp",
      [](int pp, int m, int v) {
        check_schedule_sizes("dualpipev", pp, m);
        require_one_chunk("dualpipev", v, "places its 2 chunks per stage itself (the V)");
        check_dualpipev(pp, m);
      },
      [](int pp, int, int) { return Placement::v_shape(pp); },
      [](int pp, int m, int) { return dualpipev_schedule(pp, m); },
      nullptr,
      [](int pp, int, int, const OpCosts& c) {
        return (pp - 1) * (c.pair() + c.backward_input - 2 * c.backward_weight);
      },
  });
  rows.push_back({
      "dualpipe",
      "DeepSeek's DualPipe: two directions, each stage's parameters mirrored on stages k and pp-1-k",
      "parallel.pp even; parallel.micro_batches even and >= 2 x parallel.pp",
      [](int pp, int m, int v) {
        check_schedule_sizes("dualpipe", pp, m);
        require_one_chunk("dualpipe", v, "places its 2 chunks per stage itself (two directions)");
        check_dualpipe(pp, m);
      },
      [](int pp, int m, int) { return Placement::bidirectional(pp, m); },
      [](int pp, int m, int) { return dualpipe_schedule(pp, m); },
      nullptr,
      [](int pp, int, int, const OpCosts& c) {
        return (pp / 2 - 1) * (c.pair() + c.backward_input - 2 * c.backward_weight);
      },
  });
  return rows;
}

}  // namespace

const std::vector<ScheduleInfo>& schedule_registry() {
  static const std::vector<ScheduleInfo> rows = make_registry();  // immutable after first use
  return rows;
}

std::vector<std::string> schedule_names() {
  std::vector<std::string> names;
  for (const ScheduleInfo& row : schedule_registry()) names.push_back(row.name);
  return names;
}

std::string schedule_names_joined(const std::string& separator) {
  std::string out;
  for (const ScheduleInfo& row : schedule_registry()) out += (out.empty() ? "" : separator) + row.name;
  return out;
}

const ScheduleInfo& schedule_info(const std::string& name) {
  for (const ScheduleInfo& row : schedule_registry()) {
    if (row.name == name) return row;
  }
  throw ScheduleError("parallel.schedule='" + name + "' is unknown (known: " +
                      schedule_names_joined(", ") + ")");
}

Schedule make_schedule(const std::string& name, int pp, int micro_batches, int virtual_stages) {
  const ScheduleInfo& row = schedule_info(name);
  row.validate(pp, micro_batches, virtual_stages);
  return row.make(pp, micro_batches, virtual_stages);
}

Placement schedule_placement(const std::string& name, int pp, int micro_batches,
                             int virtual_stages) {
  const ScheduleInfo& row = schedule_info(name);
  row.validate(pp, micro_batches, virtual_stages);
  return row.placement(pp, micro_batches, virtual_stages);
}

PredictedBubble predicted_bubble(const std::string& name, int pp, int micro_batches,
                                 int virtual_stages, const OpCosts& costs) {
  const ScheduleInfo& row = schedule_info(name);
  row.validate(pp, micro_batches, virtual_stages);
  if (row.closed_form_bubble) {
    return {row.closed_form_bubble(pp, micro_batches, virtual_stages, costs), true};
  }
  OpCosts no_comm = costs;
  no_comm.comm = 0.0;
  return {simulate_schedule(row.make(pp, micro_batches, virtual_stages), no_comm).bubble_fraction,
          false};
}

}  // namespace tessera::parallel
