#include "cluster/train_cluster_option.h"

#include <cstdio>
#include <stdexcept>

#include "cluster/cluster_spec.h"
#include "trainer/recipe.h"

namespace tessera::cluster {

std::vector<std::string> resolve_train_cluster(const std::vector<std::string>& args) {
  std::vector<std::string> rest, sets;
  std::string cluster, recipe;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& name) -> std::string {
      if (a.size() > name.size() && a.compare(0, name.size() + 1, name + "=") == 0) {
        return a.substr(name.size() + 1);
      }
      if (i + 1 >= args.size()) throw std::invalid_argument(name + " needs a value");
      return args[++i];
    };
    if (a == "--cluster" || a.rfind("--cluster=", 0) == 0) {
      cluster = value("--cluster");
      continue;
    }
    rest.push_back(a);
    if (a == "--set" || a.rfind("--set=", 0) == 0) {
      sets.push_back(value("--set"));
      if (a == "--set") rest.push_back(sets.back());
    } else if (a == "--resume") {
      if (i + 1 < args.size()) rest.push_back(args[++i]);
    } else if (!a.empty() && a[0] != '-' && recipe.empty()) {
      recipe = a;
    }
  }
  if (cluster.empty()) return args;
  const ClusterSpec spec = load_cluster_spec(cluster);
  if (recipe.empty()) return rest;  // train reports the missing RECIPE
  const trainer::Recipe r = trainer::load_recipe(recipe, sets);
  char peak[64];
  std::snprintf(peak, sizeof(peak), "run.peak_tflops=%.17g",
                spec.device.peak_tflops(r.precision.compute));
  rest.push_back("--set");
  rest.push_back(peak);
  return rest;
}

}  // namespace tessera::cluster
