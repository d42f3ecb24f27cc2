#include "cluster/plan_pieces.h"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "trainer/chunk_steps.h"

namespace tessera::cluster {
namespace {

// The virtual clock the steps advance. List 0 is the only list, or an FB pair's backward; 1 the
// pair's forward (run_overlapped's numbering).
struct Clock {
  explicit Clock(const ChunkWork& work)
      : exchanges_take_cores(work.exchanges_take_cores), sync_loss(work.sync_loss) {}
  bool exchanges_take_cores;
  std::function<double(double)> sync_loss;
  double now = 0, waited = 0, compute = 0, comm = 0;
  double compute_at_exchange = 0;  // `compute` when the last exchange was posted
  // Exchanges queue on their link: 0 the EP group's network (across nodes when it spans
  // several), 1 the links inside a node (node-aware dispatch's second hop). One exchange at a
  // time on each, in posting order; the two run side by side.
  double link_free[2] = {0, 0};
  double arrival[2] = {0, 0};  // when each list's last posted exchange arrives
  std::vector<PieceSpan> spans;
};

struct PieceCost {
  double compute = 0, comm = 0;
  int link = 0;
};

// The work of the trainer's piece `name` in `phase` of a unit. A piece the planner does not know
// is an error: whoever adds a piece to a block gives it a cost here (tests walk every block).
PieceCost piece_cost(const std::string& name, char phase, const UnitCost& u) {
  if (phase == 'F') {
    if (name == "attention") return {u.attention.f};
    if (name == "ffn") return {u.ffn.f};
    if (name == "route") return {u.router.f, u.small};
    if (name == "dispatch") return {0, u.dispatch};
    if (name == "dispatch routes") return {0, u.small};
    if (name == "shared experts") return {u.shared.f};
    if (name == "forward within node" || name == "reduce within node") return {};
    if (name == "dispatch within node") return {0, u.dispatch_within, 1};
    if (name == "experts") return {u.experts.f};
    if (name == "combine within node") return {0, u.combine_within, 1};
    if (name == "combine") return {0, u.combine};
    if (name == "unpermute") return {u.permute.f};
  } else if (phase == 'B') {
    if (name == "attention") return {u.attention.b};
    if (name == "ffn") return {u.ffn.b};
    if (name == "combine backward" || name == "unpermute backward") return {u.permute.b / 2};
    if (name == "dispatch grads" || name == "combine grads") return {0, u.backward};
    if (name == "shared experts and router backward") return {u.shared.b + u.router.b};
    if (name == "shared experts backward") return {u.shared.b};
    if (name == "router backward") return {u.router.b};
    if (name == "combine backward within node" || name == "reduce grads within node") return {};
    if (name == "dispatch grads within node" || name == "combine grads within node") {
      return {0, u.backward_within, 1};
    }
    if (name == "return gate grads") return {0, u.small};
    if (name == "experts backward") return {u.experts.b};
  } else {
    if (name == "attention weights") return {u.attention.w};
    if (name == "ffn weights") return {u.ffn.w};
    if (name == "experts weights") return {u.experts.w};
    if (name == "shared experts, router and norm weights") return {u.shared.w + u.router.w};
  }
  throw std::logic_error("cluster/plan_pieces: no cost for the " + std::string(1, phase) +
                         " piece '" + name + "'");
}

trainer::ChunkStep make_step(Clock& clock, int list, const std::string& name, char phase,
                             PieceCost cost, bool communicates, bool waits, int layer = -1) {
  trainer::ChunkStep s;
  s.name = name;
  s.phase = phase;
  s.communicates = communicates;
  s.waits = waits;
  s.layer = layer;
  s.run = [&clock, list, cost, communicates, waits, layer,
           label = std::string(1, phase) + " " + name] {
    const double begin = clock.now;
    if (waits) {
      const double t = std::max(clock.now, clock.arrival[list]);
      clock.waited += t - clock.now;
      if (t > clock.now) {
        clock.spans.push_back({"wait all_to_all_v", 0, clock.now, t, list, layer});
      }
      clock.now = t;
    }
    clock.now += cost.compute;
    clock.compute += cost.compute;
    clock.spans.push_back({label, 0, begin, clock.now, list, layer});
    // The group's ranks reach this exchange apart by what the phase before it lost.
    double late = 0;
    if (communicates) {
      const double phase = clock.compute - clock.compute_at_exchange;
      late = clock.sync_loss && phase > 0 ? std::max(0.0, clock.sync_loss(phase)) : 0.0;
      clock.compute_at_exchange = clock.compute;
    }
    if (late > 0 && clock.exchanges_take_cores) {  // the rank waits for its peers, then copies
      clock.spans.push_back({"wait all_to_all_v", 0, clock.now, clock.now + late, list, layer});
      clock.now += late;
      clock.waited += late;
    }
    if (communicates && clock.exchanges_take_cores) {
      clock.spans.push_back({"all_to_all_v", 1 + cost.link, clock.now, clock.now + cost.comm, list,
                             layer});
      clock.spans.push_back({"exchange on this core", 0, clock.now, clock.now + cost.comm, list,
                             layer});
      clock.now += cost.comm;
      clock.arrival[list] = std::max(clock.arrival[list], clock.now);
      clock.comm += cost.comm;
    } else if (communicates) {
      double& link = clock.link_free[cost.link];
      const double start = std::max(clock.now + late, link);
      link = start + cost.comm;
      clock.arrival[list] = std::max(clock.arrival[list], link);
      clock.comm += cost.comm;
      clock.spans.push_back({"all_to_all_v", 1 + cost.link, start, link, list, layer});
    }
  };
  return s;
}

void append_pieces(Clock& clock, int list, const ChunkWork& work, size_t block, char phase,
                   trainer::ChunkSteps& steps) {
  const trainer::BlockPieces& pieces = work.blocks[block]->pieces();
  const std::vector<trainer::BlockPiece>& list_pieces =
      phase == 'F' ? pieces.forward : phase == 'B' ? pieces.backward_input : pieces.backward_weight;
  const UnitCost& unit = work.units.at(block / 2);
  const int layer = work.first_layer + static_cast<int>(block / 2);
  for (const trainer::BlockPiece& p : list_pieces) {
    steps.push_back(make_step(clock, list, p.name, phase, piece_cost(p.name, phase, unit),
                              p.communicates, p.waits, layer));
  }
}

trainer::ChunkSteps forward_steps(Clock& clock, int list, const ChunkWork& work) {
  trainer::ChunkSteps steps;
  // The glue keeps the trainer's step names (trainer/model.cc), so traces compare by name.
  if (work.embedding.f > 0) steps.push_back(make_step(clock, list, "input", 'F', {work.embedding.f}, false, false));
  for (size_t b = 0; b < work.blocks.size(); ++b) append_pieces(clock, list, work, b, 'F', steps);
  if (work.head.f > 0) steps.push_back(make_step(clock, list, "output", 'F', {work.head.f}, false, false));
  return steps;
}

// The backward as the trainer lists it: head, then the blocks from the last; `weights`: each
// block's weight steps (phase 'W') right after its input-gradient steps, as in an FB pair, and
// the embedding's last.
trainer::ChunkSteps backward_steps(Clock& clock, int list, const ChunkWork& work, bool input,
                                   bool weights) {
  trainer::ChunkSteps steps;
  if (input && work.head.b > 0) steps.push_back(make_step(clock, list, "output", 'B', {work.head.b}, false, false));
  if (weights && work.head.w > 0) steps.push_back(make_step(clock, list, "head weights", 'W', {work.head.w}, false, false));
  for (size_t b = work.blocks.size(); b-- > 0;) {
    if (input) append_pieces(clock, list, work, b, 'B', steps);
    if (weights) append_pieces(clock, list, work, b, 'W', steps);
  }
  if (weights && work.embedding.w > 0) {
    steps.push_back(make_step(clock, list, "embedding weights", 'W', {work.embedding.w}, false, false));
  }
  return steps;
}

Timed finish(const Clock& c) {
  return {std::max({c.now, c.arrival[0], c.arrival[1]}), c.waited, c.compute, c.comm,
          c.compute - c.compute_at_exchange, c.spans};
}

Timed run_sequential(const ChunkWork& work, bool forward, bool input, bool weights) {
  Clock clock(work);
  trainer::run_steps(forward ? forward_steps(clock, 0, work)
                             : backward_steps(clock, 0, work, input, weights));
  return finish(clock);
}

}  // namespace

Timed time_forward(const ChunkWork& work) { return run_sequential(work, true, false, false); }
Timed time_backward_input(const ChunkWork& work) { return run_sequential(work, false, true, false); }
Timed time_backward_weight(const ChunkWork& work) { return run_sequential(work, false, false, true); }
Timed time_backward(const ChunkWork& work) { return run_sequential(work, false, true, true); }

Timed time_forward_backward(const ChunkWork& f, const ChunkWork& b) {
  Clock clock(f);
  const trainer::ChunkSteps backward = backward_steps(clock, 0, b, true, true);
  const trainer::ChunkSteps forward = forward_steps(clock, 1, f);
  trainer::run_overlapped(backward, forward);
  return finish(clock);
}

}  // namespace tessera::cluster
