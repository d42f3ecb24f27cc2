#include "cluster/plan_search.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "parallel/rank_grid.h"
#include "parallel/schedule.h"
#include "parallel/schedule_registry.h"

namespace tessera::cluster {
namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

bool faster(const SearchCandidate& a, const SearchCandidate& b) {
  return a.plan.tokens_per_s > b.plan.tokens_per_s;
}

// The micro-batch counts worth planning for one replica of `dp`: every count that divides its
// sequences (train.global_batch / dp: the trainer refuses the others), from 1 (no pipelining)
// up. A fixed list (1, pp, 2 pp, 4 pp, 8 pp) missed DeepSeek-V3's own layout: 40 micro-batches
// of a replica's 120 sequences on 16 stages. None when the batch does not split over dp at all.
std::vector<int64_t> micro_batch_counts(const trainer::Recipe& recipe, int64_t dp) {
  if (recipe.train.global_batch % dp != 0) return {};
  return divisors(recipe.train.global_batch / dp);
}

}  // namespace

SearchResult search_layouts(const trainer::Recipe& recipe, const ClusterSpec& cluster,
                            const SearchOptions& options) {
  const int64_t world = options.world > 0 ? options.world : cluster.devices();
  std::vector<trainer::Recipe> candidates;
  std::vector<std::vector<std::string>> overrides;
  // Every combination is enumerated; the layout's rules (trainer::validate_layout, through
  // validate_recipe here and make_plan's memory plan with the world) refuse those that cannot run.
  // (pp, ep, schedule) candidates whose dp does not divide the global batch: one refusal each.
  size_t no_split = 0;
  for (int64_t pp : divisors(world)) {
    const int64_t dp = world / pp;
    const std::vector<int64_t> mbs = micro_batch_counts(recipe, dp);
    for (int64_t ep : divisors(dp)) {
      for (const std::string& schedule : parallel::schedule_names()) {
        if (mbs.empty()) ++no_split;
        for (int64_t mb : mbs) {
          trainer::Recipe r = recipe;
          r.parallel.pp = pp;
          r.parallel.dp = dp;
          r.parallel.ep = ep;
          r.parallel.schedule = schedule;
          r.parallel.micro_batches = mb;
          r.parallel.virtual_stages = schedule == "interleaved" ? 2 : 1;
          r.parallel.stage_layers.clear();  // balanced: the recipe's split was for its own pp
          candidates.push_back(r);
          overrides.push_back({"parallel.pp=" + std::to_string(pp),
                               "parallel.dp=" + std::to_string(dp),
                               "parallel.ep=" + std::to_string(ep),
                               "parallel.schedule=" + schedule,
                               "parallel.micro_batches=" + std::to_string(mb),
                               "parallel.virtual_stages=" +
                                   std::to_string(r.parallel.virtual_stages)});
        }
      }
    }
  }
  SearchResult result;
  result.considered = candidates.size() + no_split;
  result.invalid = no_split;
  PlanOptions plan_options;
  plan_options.memory_per_stage = true;
  plan_options.expert_imbalance = options.expert_imbalance;
  auto plan_one = [&](const trainer::Recipe& r, std::vector<std::string> o) {
    try {
      trainer::validate_recipe(r);
      SearchCandidate c{std::move(o), make_plan(r, cluster, plan_options)};
      const bool node_aware = c.plan.node_aware_dispatch;
      (c.plan.fits ? result.fitting : result.not_fitting).push_back(std::move(c));
      return node_aware;
    } catch (const trainer::RecipeError&) {
      ++result.invalid;
    } catch (const parallel::LayoutError&) {
      ++result.invalid;
    } catch (const parallel::ScheduleError&) {
      ++result.invalid;
    }
    return false;
  };
  for (size_t i = 0; i < candidates.size(); ++i) {
    // `auto` turns node-aware dispatch on wherever an EP group spans nodes, a rule, not a
    // price: its fp32 across-node partial sums can cost more than the rows it saves (DeepSeek-
    // V3 in fp8 on H800s), so the flat exchange is planned beside it.
    if (plan_one(candidates[i], overrides[i]) &&
        candidates[i].parallel.node_aware_dispatch == "auto") {
      trainer::Recipe flat = candidates[i];
      flat.parallel.node_aware_dispatch = "off";
      std::vector<std::string> o = overrides[i];
      o.push_back("parallel.node_aware_dispatch=off");
      ++result.considered;
      plan_one(flat, std::move(o));
    }
    if (options.progress) options.progress(i + 1, candidates.size());
  }
  std::stable_sort(result.fitting.begin(), result.fitting.end(), faster);
  std::stable_sort(result.not_fitting.begin(), result.not_fitting.end(), faster);
  return result;
}

namespace {

// The not-fitting layouts by peak memory, least first: how far the closest ones are.
std::vector<const SearchCandidate*> smallest(const SearchResult& result, size_t top) {
  std::vector<const SearchCandidate*> out;
  for (const SearchCandidate& c : result.not_fitting) out.push_back(&c);
  std::stable_sort(out.begin(), out.end(), [](const SearchCandidate* a, const SearchCandidate* b) {
    return a->plan.peak_memory_gib < b->plan.peak_memory_gib;
  });
  out.resize(std::min(top, out.size()));
  return out;
}

}  // namespace

std::string format_search(const SearchResult& result, size_t top) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line),
                "%zu layouts considered, %zu refused by the recipe's or schedule's rules, %zu fit, "
                "%zu do not fit in device memory\n",
                result.considered, result.invalid, result.fitting.size(),
                result.not_fitting.size());
  out += line;
  const std::string header =
      "  rank | pp   dp   ep   dispatch schedule     mb  vs |   tokens/s    step s  MFU%  "
      "bubble%  exposed-comm s | peak GiB (headroom)\n";
  auto row = [&](size_t rank, const Plan& p) {
    // Where the EP group spans nodes: node-aware or flat expert exchanges.
    const char* dispatch = p.ep_nodes <= 1 ? "-" : p.node_aware_dispatch ? "node" : "flat";
    std::snprintf(line, sizeof(line),
                  "  %4zu | %-4d %-4d %-4d %-8s %-12s %-3d %-2d | %10.4g %9.4g %5.1f %7.1f "
                  "%15.3g | %.1f (%+.1f)\n",
                  rank, p.pp, p.dp, p.ep, dispatch, p.schedule.c_str(), p.micro_batches,
                  p.virtual_stages, p.tokens_per_s, p.step_s, 100 * p.mfu, 100 * p.bubble_fraction,
                  p.exposed_comm_s, p.peak_memory_gib, p.device_memory_gib - p.peak_memory_gib);
    out += line;
  };
  const bool none = result.fitting.empty();
  const std::vector<SearchCandidate>& shown = none ? result.not_fitting : result.fitting;
  if (none) out += "NO LAYOUT FITS; the fastest regardless of memory:\n";
  out += header;
  for (size_t i = 0; i < std::min(top, shown.size()); ++i) row(i + 1, shown[i].plan);
  if (none && !shown.empty()) {
    out += "the least memory:\n" + header;
    size_t rank = 0;
    for (const SearchCandidate* c : smallest(result, top)) row(++rank, c->plan);
  }
  if (!shown.empty()) {
    out += none ? "fastest (does not fit): tessera plan RECIPE --cluster FILE"
                : "best: tessera plan RECIPE --cluster FILE";
    for (const std::string& o : shown.front().overrides) out += " --set " + o;
    out += "\n";
  }
  return out;
}

std::string search_json(const SearchResult& result, size_t top) {
  nlohmann::json j;
  j["considered"] = result.considered;
  j["invalid"] = result.invalid;
  j["fitting"] = result.fitting.size();
  j["not_fitting"] = result.not_fitting.size();
  const bool none = result.fitting.empty();
  const std::vector<SearchCandidate>& shown = none ? result.not_fitting : result.fitting;
  j["shown_fit"] = !none;
  j["layouts"] = nlohmann::json::array();
  auto layout = [](const SearchCandidate& c) {
    nlohmann::json one = nlohmann::json::parse(plan_json(c.plan));
    one["overrides"] = c.overrides;
    return one;
  };
  for (size_t i = 0; i < std::min(top, shown.size()); ++i) j["layouts"].push_back(layout(shown[i]));
  if (none) {  // the closest to fitting, least peak memory first
    j["least_memory"] = nlohmann::json::array();
    for (const SearchCandidate* c : smallest(result, top)) j["least_memory"].push_back(layout(*c));
  }
  return j.dump();
}

}  // namespace tessera::cluster
