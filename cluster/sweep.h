// Sweeps: a grid of recipe keys expanded into one recipe per point (DESIGN.md "Recipes").
//
// A sweep file (YAML):
//   base: recipes/bench-moe.yaml      # recipe every point starts from (relative to the cwd)
//   dir: runs/sweeps/strong           # output directory (default: runs/sweeps/<file stem>)
//   concurrency: 1                    # array tasks running at once (%N; 0 = no limit)
//   set: {train.steps: 10}            # overrides of every point
//   zip:                              # keys varied together: lists of one length, one axis
//     parallel.dp: [1, 2, 4]
//     train.global_batch: [8, 16, 32]
//   grid:                             # one axis per key; points are the Cartesian product
//     parallel.schedule: [1f1b, zb1p] #   (zip first, then grid keys in file order, last fastest)
// Point i's recipe is DIR/points/<i>/recipe.yaml with run.dir DIR/points/<i>/run; its process
// count is parallel.pp * parallel.dp. Every point's recipe is validated when the sweep expands.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::cluster {

class SweepError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SweepAxis {
  std::vector<std::string> keys;                  // one key (grid) or several (zip)
  std::vector<std::vector<std::string>> values;   // values[i][k]: YAML scalar text of keys[k]
};

struct SweepSpec {
  std::string source;            // the sweep file
  std::string base;              // base recipe path
  std::string dir;               // output directory
  int concurrency = 0;
  std::vector<std::string> set;  // "key=value" for every point
  std::vector<SweepAxis> axes;   // zip axis (if any) first, then one per grid key
};

struct SweepPoint {
  int index = 0;
  std::vector<std::string> overrides;  // "key=value" of this point's axes (not `set`, not run.dir)
  trainer::Recipe recipe;              // validated, run.dir = <dir>/points/<index>/run
  std::string recipe_path;             // <dir>/points/<index>/recipe.yaml
  long long world = 1;                 // parallel.pp * parallel.dp
};

// Throws SweepError naming the file and the key.
SweepSpec load_sweep(const std::string& path);

// Points in order. Throws SweepError naming the point and its overrides on a recipe error.
std::vector<SweepPoint> expand_sweep(const SweepSpec& spec);

// Writes each point's recipe.yaml and overrides.txt (one "key=value" a line) under
// <dir>/points/<index>/, and a copy of the sweep file as <dir>/sweep.yaml.
void write_sweep_points(const SweepSpec& spec, const std::vector<SweepPoint>& points);

}  // namespace tessera::cluster
