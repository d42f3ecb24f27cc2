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

}  // namespace

SearchResult search_layouts(const trainer::Recipe& recipe, const ClusterSpec& cluster,
                            const SearchOptions& options) {
  const int64_t world = options.world > 0 ? options.world : cluster.devices();
  std::vector<trainer::Recipe> candidates;
  std::vector<std::vector<std::string>> overrides;
  // Every combination is enumerated; the layout's rules (trainer::validate_layout, through
  // validate_recipe here and make_plan's memory plan with the world) refuse those that cannot run.
  for (int64_t pp : divisors(world)) {
    const int64_t dp = world / pp;
    for (int64_t ep : divisors(dp)) {
      for (const std::string& schedule : parallel::schedule_names()) {
        std::vector<int64_t> mbs = {1, pp, 2 * pp, 4 * pp, 8 * pp};
        std::sort(mbs.begin(), mbs.end());
        mbs.erase(std::unique(mbs.begin(), mbs.end()), mbs.end());
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
  result.considered = candidates.size();
  PlanOptions plan_options;
  plan_options.memory_per_stage = true;
  plan_options.expert_imbalance = options.expert_imbalance;
  for (size_t i = 0; i < candidates.size(); ++i) {
    try {
      trainer::validate_recipe(candidates[i]);
      SearchCandidate c{overrides[i], make_plan(candidates[i], cluster, plan_options)};
      (c.plan.fits ? result.fitting : result.not_fitting).push_back(std::move(c));
    } catch (const trainer::RecipeError&) {
      ++result.invalid;
    } catch (const parallel::LayoutError&) {
      ++result.invalid;
    } catch (const parallel::ScheduleError&) {
      ++result.invalid;
    }
    if (options.progress) options.progress(i + 1, candidates.size());
  }
  std::sort(result.fitting.begin(), result.fitting.end(), faster);
  std::sort(result.not_fitting.begin(), result.not_fitting.end(), faster);
  return result;
}

std::string format_search(const SearchResult& result, size_t top) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line),
                "%zu layouts considered, %zu refused by the recipe's or schedule's rules, %zu fit, "
                "%zu do not fit in device memory\n",
                result.considered, result.invalid, result.fitting.size(),
                result.not_fitting.size());
  out += line;
  const bool none = result.fitting.empty();
  const std::vector<SearchCandidate>& shown = none ? result.not_fitting : result.fitting;
  if (none) out += "NO LAYOUT FITS; the fastest regardless of memory:\n";
  out += "  rank | pp   dp   ep schedule     mb vs |   tokens/s    step s  MFU%  bubble%  "
         "exposed-comm s | peak GiB (headroom)\n";
  for (size_t i = 0; i < std::min(top, shown.size()); ++i) {
    const Plan& p = shown[i].plan;
    std::snprintf(line, sizeof(line),
                  "  %4zu | %-4d %-4d %-4d %-12s %-3d %-2d | %10.4g %9.4g %5.1f %7.1f %15.3g | "
                  "%.1f (%+.1f)\n",
                  i + 1, p.pp, p.dp, p.ep, p.schedule.c_str(), p.micro_batches, p.virtual_stages,
                  p.tokens_per_s, p.step_s, 100 * p.mfu, 100 * p.bubble_fraction,
                  p.exposed_comm_s, p.peak_memory_gib, p.device_memory_gib - p.peak_memory_gib);
    out += line;
  }
  if (!shown.empty()) {
    out += "best: tessera plan RECIPE --cluster FILE";
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
  for (size_t i = 0; i < std::min(top, shown.size()); ++i) {
    nlohmann::json one = nlohmann::json::parse(plan_json(shown[i].plan));
    one["overrides"] = shown[i].overrides;
    j["layouts"].push_back(one);
  }
  return j.dump();
}

}  // namespace tessera::cluster
