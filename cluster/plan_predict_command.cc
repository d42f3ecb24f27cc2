// tessera plan RECIPE --cluster FILE [--set k=v]... [--json]
#include <boost/program_options.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>

#include "cluster/cluster_spec.h"
#include "cluster/commands.h"
#include "cluster/plan.h"
#include "cluster/plan_search.h"
#include "cluster/plan_trace.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule.h"
#include "trainer/command_line.h"

namespace tessera::cluster {

namespace po = boost::program_options;

int run_plan_predict_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera plan RECIPE --cluster FILE [--set key.path=value]... [--json]\n"
      "                   [--trace FILE] [--expert-imbalance X] [--search [--world N] [--top K]]\n"
      "       tessera plan calibrate RECIPE... --out FILE   (measure this machine: --help there)\n\n"
      "Predicts what RECIPE's layout costs on the cluster FILE describes (recipes/clusters/*.yaml,\n"
      "or a file `tessera plan calibrate` measured), without running it: step time, pipeline\n"
      "bubble, exposed communication, tokens/s, MFU, GPU-hours and days per trillion tokens,\n"
      "per-rank memory by kind (the trainer's own allocation plan, as `train --dry-run`) and\n"
      "whether it fits. Every precision and schedule a recipe can name is planned, also those\n"
      "training does not run yet on that device (run.device is ignored: the cluster file says\n"
      "what the ranks run on, and its gpus_per_node sets parallel.ranks_per_node).\n"
      "How each term is priced: cluster/plan.h and ARCHITECTURE.md (\"The planner\").\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("cluster", po::value<std::string>(), "cluster description (YAML), required")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a recipe key, e.g. --set parallel.pp=4 (repeatable)")
      ("json", "print one JSON object instead of the report")
      ("trace", po::value<std::string>(),
       "also write the predicted step as a Chrome trace (the trainer's trace format) to FILE")
      ("expert-imbalance", po::value<double>()->default_value(1.0),
       "the busiest EP rank's routed rows over the EP ranks' mean, which the EP group waits "
       "for (a run's metrics report it: expert_ep_rank_load_max_over_mean); 1 = balanced")
      ("search", "enumerate layouts on the cluster's devices (pp, dp, ep, schedule, every "
                 "micro-batch count dividing a replica's sequences; node-aware and flat expert "
                 "exchanges where an EP group spans nodes under node_aware_dispatch=auto), "
                 "drop those that do not fit, rank the rest by predicted tokens/s (none fits: "
                 "the fastest and the least memory)")
      ("world", po::value<int>()->default_value(0),
       "--search: ranks to lay out (0 = every device of the cluster)")
      ("top", po::value<int>()->default_value(10), "--search: layouts to show");
  po::variables_map vm;
  if (auto status = trainer::parse_recipe_command("plan", args, visible, vm)) return *status;
  if (!vm.count("cluster")) {
    std::cerr << "tessera plan: --cluster FILE is required (e.g. recipes/clusters/h800.yaml)\n";
    return 2;
  }
  const double imbalance = vm["expert-imbalance"].as<double>();
  if (!(imbalance >= 1.0)) {
    std::cerr << "tessera plan: --expert-imbalance " << imbalance
              << " is below 1 (the busiest EP rank has at least the mean)\n";
    return 2;
  }
  std::vector<std::string> overrides;
  if (vm.count("set")) overrides = vm["set"].as<std::vector<std::string>>();
  // The trainer refuses precisions a device does not run yet; the plan is for the cluster's.
  overrides.push_back("run.device=cpu");
  try {
    const trainer::Recipe recipe = trainer::load_recipe(vm["recipe"].as<std::string>(), overrides);
    const ClusterSpec cluster = load_cluster_spec(vm["cluster"].as<std::string>());
    if (vm.count("search")) {
      SearchOptions options;
      options.world = vm["world"].as<int>();
      options.expert_imbalance = imbalance;
      options.progress = [](size_t done, size_t total) {
        // A line per 5% (a cluster of thousands of devices has thousands of layouts).
        if (done * 20 / total != (done - 1) * 20 / total) {
          std::cerr << "tessera plan --search: " << done << "/" << total << " layouts tried\n";
        }
      };
      const SearchResult result = search_layouts(recipe, cluster, options);
      const int top = std::max(1, vm["top"].as<int>());
      if (vm.count("json")) {
        std::cout << search_json(result, static_cast<size_t>(top)) << "\n";
      } else {
        std::cout << format_search(result, static_cast<size_t>(top));
      }
      return 0;
    }
    PlanOptions options;
    options.pieces = vm.count("trace") > 0;
    options.expert_imbalance = imbalance;
    const Plan plan = make_plan(recipe, cluster, options);
    std::cout << (vm.count("json") ? plan_json(plan) + "\n" : format_plan(plan));
    if (vm.count("trace")) {
      const std::string path = vm["trace"].as<std::string>();
      std::ofstream out(path);
      out << plan_chrome_trace(plan);
      if (!out.good()) {
        std::cerr << "tessera plan: cannot write the trace to " << path << "\n";
        return 1;
      }
      std::cerr << "tessera plan: predicted step's trace written to " << path << "\n";
    }
    return 0;
  } catch (const trainer::RecipeError& e) {
    std::cerr << "tessera plan: " << e.what() << "\n";
    return 2;
  } catch (const ClusterSpecError& e) {
    std::cerr << "tessera plan: " << e.what() << "\n";
    return 2;
  } catch (const parallel::LayoutError& e) {
    std::cerr << "tessera plan: " << e.what() << "\n";
    return 2;
  } catch (const parallel::ScheduleError& e) {
    std::cerr << "tessera plan: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tessera plan: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tessera::cluster
