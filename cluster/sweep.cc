#include "cluster/sweep.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace tessera::cluster {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& key, const std::string& what,
                       const YAML::Mark& mark) {
  throw SweepError(source + ": " + key + ": " + what + " (line " + std::to_string(mark.line + 1) +
                   ")");
}

// A scalar node as YAML text that --set parses back to the same scalar.
std::string scalar_text(const YAML::Node& n) {
  YAML::Emitter e;
  e << n;
  return e.c_str();
}

std::vector<std::string> scalar_list(const std::string& source, const std::string& key,
                                     const YAML::Node& list) {
  if (!list.IsSequence() || list.size() == 0) {
    fail(source, key, "expected a non-empty list of values", list.Mark());
  }
  std::vector<std::string> out;
  for (const YAML::Node& v : list) {
    if (!v.IsScalar()) fail(source, key, "each value must be a scalar", v.Mark());
    out.push_back(scalar_text(v));
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

SweepSpec load_sweep(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw SweepError(path + ": cannot open sweep file");
  } catch (const YAML::Exception& e) {
    throw SweepError(path + ": YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                     ": " + e.msg);
  }
  if (!root.IsMap()) throw SweepError(path + ": expected a map (base, dir, set, zip, grid, ...)");
  SweepSpec spec;
  spec.source = path;
  spec.dir = "runs/sweeps/" + fs::path(path).stem().string();
  std::set<std::string> recipe_keys;
  for (const auto& k : trainer::recipe_keys()) recipe_keys.insert(k.key);
  auto check_key = [&](const std::string& section, const YAML::Node& key) {
    const std::string k = key.Scalar();
    if (!recipe_keys.count(k)) fail(path, section + "." + k, "not a recipe key", key.Mark());
    if (k == "run.dir") fail(path, section + "." + k, "the sweep sets run.dir per point", key.Mark());
    return k;
  };
  std::set<std::string> varied;
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "base" || key == "dir") {
      if (!v.IsScalar() || v.Scalar().empty()) fail(path, key, "expected a path", v.Mark());
      (key == "base" ? spec.base : spec.dir) = v.Scalar();
    } else if (key == "concurrency") {
      try {
        spec.concurrency = v.as<int>();
      } catch (const YAML::Exception&) {
        fail(path, key, "expected an integer", v.Mark());
      }
      if (spec.concurrency < 0) fail(path, key, "must be >= 0 (0 = no limit)", v.Mark());
    } else if (key == "set") {
      if (!v.IsMap()) fail(path, key, "expected a map of recipe keys to values", v.Mark());
      for (const auto& s : v) {
        const std::string k = check_key("set", s.first);
        if (!s.second.IsScalar()) fail(path, "set." + k, "expected a scalar", s.second.Mark());
        spec.set.push_back(k + "=" + scalar_text(s.second));
      }
    } else if (key == "zip") {
      if (!v.IsMap() || v.size() == 0) fail(path, key, "expected a map of keys to lists", v.Mark());
      SweepAxis axis;
      std::vector<std::vector<std::string>> columns;
      for (const auto& z : v) {
        const std::string k = check_key("zip", z.first);
        if (!varied.insert(k).second) fail(path, "zip." + k, "varied twice", z.first.Mark());
        axis.keys.push_back(k);
        columns.push_back(scalar_list(path, "zip." + k, z.second));
        if (columns.back().size() != columns.front().size()) {
          fail(path, "zip." + k,
               "has " + std::to_string(columns.back().size()) + " values but zip." +
                   axis.keys.front() + " has " + std::to_string(columns.front().size()),
               z.second.Mark());
        }
      }
      for (size_t i = 0; i < columns.front().size(); ++i) {
        std::vector<std::string> row;
        for (const auto& c : columns) row.push_back(c[i]);
        axis.values.push_back(row);
      }
      spec.axes.insert(spec.axes.begin(), axis);  // zip is the outermost axis
    } else if (key == "grid") {
      if (!v.IsMap() || v.size() == 0) fail(path, key, "expected a map of keys to lists", v.Mark());
      for (const auto& g : v) {
        const std::string k = check_key("grid", g.first);
        if (!varied.insert(k).second) fail(path, "grid." + k, "varied twice", g.first.Mark());
        SweepAxis axis;
        axis.keys.push_back(k);
        for (const std::string& value : scalar_list(path, "grid." + k, g.second)) {
          axis.values.push_back({value});
        }
        spec.axes.push_back(axis);
      }
    } else {
      fail(path, key, "unknown key (base, dir, concurrency, set, zip, grid)", kv.first.Mark());
    }
  }
  if (spec.base.empty()) throw SweepError(path + ": base: required (the recipe every point starts from)");
  for (const std::string& s : spec.set) {
    if (varied.count(s.substr(0, s.find('=')))) {
      throw SweepError(path + ": set." + s.substr(0, s.find('=')) + ": also varied by zip/grid");
    }
  }
  return spec;
}

std::vector<SweepPoint> expand_sweep(const SweepSpec& spec) {
  size_t count = 1;
  for (const SweepAxis& a : spec.axes) count *= a.values.size();
  std::vector<SweepPoint> points;
  for (size_t i = 0; i < count; ++i) {
    SweepPoint p;
    p.index = static_cast<int>(i);
    size_t rest = i;
    std::vector<size_t> pick(spec.axes.size());
    for (size_t a = spec.axes.size(); a-- > 0;) {  // last axis varies fastest
      pick[a] = rest % spec.axes[a].values.size();
      rest /= spec.axes[a].values.size();
    }
    for (size_t a = 0; a < spec.axes.size(); ++a) {
      for (size_t k = 0; k < spec.axes[a].keys.size(); ++k) {
        p.overrides.push_back(spec.axes[a].keys[k] + "=" + spec.axes[a].values[pick[a]][k]);
      }
    }
    const std::string point_dir = spec.dir + "/points/" + std::to_string(i);
    std::vector<std::string> all = spec.set;
    all.insert(all.end(), p.overrides.begin(), p.overrides.end());
    all.push_back("run.dir=" + scalar_text(YAML::Node(point_dir + "/run")));
    try {
      p.recipe = trainer::load_recipe(spec.base, all);
    } catch (const trainer::RecipeError& e) {
      throw SweepError(spec.source + ": point " + std::to_string(i) + " (" +
                       join(p.overrides, " ") + "): " + e.what());
    }
    p.recipe_path = point_dir + "/recipe.yaml";
    p.world = p.recipe.parallel.pp * p.recipe.parallel.dp;
    points.push_back(std::move(p));
  }
  for (const SweepPoint& p : points) {
    if (!(p.recipe.slurm == points.front().recipe.slurm)) {
      throw SweepError(spec.source + ": point " + std::to_string(p.index) +
                       ": the slurm section differs from point 0's; one job array has one slurm "
                       "section (vary slurm.* keys in separate sweeps)");
    }
  }
  return points;
}

void write_sweep_points(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  fs::create_directories(spec.dir);
  fs::copy_file(spec.source, spec.dir + "/sweep.yaml", fs::copy_options::overwrite_existing);
  for (const SweepPoint& p : points) {
    const fs::path dir = fs::path(p.recipe_path).parent_path();
    fs::create_directories(dir);
    std::ofstream recipe(p.recipe_path, std::ios::trunc);
    recipe << trainer::recipe_to_yaml(p.recipe);
    std::ofstream overrides(dir / "overrides.txt", std::ios::trunc);
    for (const std::string& o : p.overrides) overrides << o << "\n";
    if (!recipe || !overrides) throw SweepError(dir.string() + ": cannot write the point's files");
  }
}

}  // namespace tessera::cluster
