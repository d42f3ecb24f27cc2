#include "cluster/slurm_config.h"

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

namespace tessera::cluster {
namespace {

using trainer::RecipeError;

// Characters sbatch's #SBATCH parser treats specially (whitespace ends a word, quotes and '\'
// quote, '#' starts a comment) or that are unsafe anywhere (control bytes). '%' is an output-pattern escape.
bool sbatch_safe(const std::string& s, bool allow_percent) {
  return std::all_of(s.begin(), s.end(), [&](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f || c == ' ' || c == '"' || c == '\'' || c == '\\' ||
        c == '#') {
      return false;
    }
    return allow_percent || c != '%';
  });
}

std::string shown(const std::string& s) {  // for messages: control bytes as \xNN
  std::string out = "'";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out + "'";
}

bool is_name(const std::string& s, const std::string& extra_chars) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
                  c == '.' || extra_chars.find(c) != std::string::npos;
         });
}

// sbatch options tessera writes itself, and the recipe key that sets each (empty: no key).
const std::vector<std::pair<std::string, std::string>>& owned_options() {
  static const std::vector<std::pair<std::string, std::string>> kOwned = {
      {"job-name", "slurm.job_name"},   {"partition", "slurm.partition"},
      {"account", "slurm.account"},     {"qos", "slurm.qos"},
      {"nodes", "slurm.nodes"},         {"ntasks-per-node", "slurm.ntasks_per_node"},
      {"ntasks", "slurm.ntasks_per_node"}, {"cpus-per-task", "slurm.cpus_per_task"},
      {"gpus-per-node", "slurm.gpus_per_node"}, {"time", "slurm.time"},
      {"signal", "slurm.signal_seconds"}, {"requeue", ""},
      {"no-requeue", ""},               {"open-mode", ""},
      {"output", ""},                   {"error", ""},
      {"chdir", ""},                    {"array", ""},
      {"parsable", ""},                 {"wrap", ""}};
  return kOwned;
}

}  // namespace

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(';', at), text.size());
    std::string item = text.substr(at, end - at);
    const size_t b = item.find_first_not_of(" \t");
    if (b != std::string::npos) {
      const size_t e = item.find_last_not_of(" \t");
      items.push_back(item.substr(b, e - b + 1));
    }
    at = end + 1;
  }
  return items;
}

std::vector<EnvVar> slurm_env(const trainer::SlurmConfig& slurm) {
  std::vector<EnvVar> vars;
  for (const std::string& item : split_list(slurm.env)) {
    const size_t eq = item.find('=');
    vars.push_back({item.substr(0, eq), eq == std::string::npos ? "" : item.substr(eq + 1)});
  }
  return vars;
}

long long time_limit_seconds(const std::string& text) {
  static const std::regex kForm(R"(^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$)");
  std::smatch m;
  if (text.size() > 32 || !std::regex_match(text, m, kForm)) return -1;
  auto num = [&](int i) { return m[i].matched ? std::stoll(m[i].str()) : 0LL; };
  const int fields = 1 + m[3].matched + m[4].matched;
  if (m[1].matched) {  // D-H, D-H:M, D-H:M:S
    return num(1) * 86400 + num(2) * 3600 + num(3) * 60 + num(4);
  }
  if (fields == 1) return num(2) * 60;                  // M
  if (fields == 2) return num(2) * 60 + num(3);         // M:S
  return num(2) * 3600 + num(3) * 60 + num(4);          // H:M:S
}

void check_sbatch_path(const std::string& path, const std::string& what) {
  if (path.empty() || !sbatch_safe(path, /*allow_percent=*/false)) {
    throw RecipeError(what + ": " + shown(path) +
                      " cannot be written in an #SBATCH line (no whitespace, quotes, backslash, "
                      "'#', '%' or control characters)");
  }
}

void validate_slurm_config(const trainer::Recipe& recipe, long long world, bool exact_tasks) {
  const trainer::SlurmConfig& s = recipe.slurm;
  const std::string src = recipe.source.empty() ? "recipe" : recipe.source;
  auto fail = [&](const std::string& key, const std::string& what) {
    throw RecipeError(src + ": slurm." + key + ": " + what);
  };
  auto name_key = [&](const std::string& key, const std::string& value, bool may_be_empty,
                      const std::string& extra_chars) {
    if (value.empty() && may_be_empty) return;
    if (!is_name(value, extra_chars)) {
      fail(key, shown(value) + " is not a Slurm name (letters, digits, '_', '-', '.'" +
                    (extra_chars.empty() ? "" : ", '" + extra_chars + "'") + ")");
    }
  };
  name_key("job_name", s.job_name, false, "");
  name_key("partition", s.partition, true, ",");
  name_key("account", s.account, true, "");
  name_key("qos", s.qos, true, "");

  const long long limit = time_limit_seconds(s.time);
  if (limit <= 0) {
    fail("time", shown(s.time) + " is not a positive Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, "
                                 "D-H:M:S)");
  }
  if (s.signal_seconds >= limit) {
    fail("signal_seconds", std::to_string(s.signal_seconds) +
                               " must be shorter than the time limit slurm.time " + s.time + " (" +
                               std::to_string(limit) + " s)");
  }

  const long long tasks = s.nodes * s.ntasks_per_node;
  if (exact_tasks ? tasks != world : tasks < world) {
    fail("ntasks_per_node",
         "slurm.nodes * slurm.ntasks_per_node = " + std::to_string(s.nodes) + " * " +
             std::to_string(s.ntasks_per_node) + " = " + std::to_string(tasks) + " processes " +
             (exact_tasks ? "must equal" : "must be at least") + " parallel.pp * parallel.dp = " +
             std::to_string(world));
  }

  // One process per GPU: a cuda run asks Slurm for a GPU per task on every node (each process
  // then takes GPU local_rank modulo the GPUs it sees).
  if (recipe.run.device == "cuda" && s.gpus_per_node < s.ntasks_per_node) {
    fail("gpus_per_node", std::to_string(s.gpus_per_node) + " GPU(s) per node for " +
                              std::to_string(s.ntasks_per_node) +
                              " processes per node (slurm.ntasks_per_node) with run.device: cuda; "
                              "request one GPU per process");
  }

  for (const std::string& option : split_list(s.extra)) {
    static const std::regex kOption(R"(^--([a-z][a-z0-9-]*)(=.*)?$)");
    std::smatch m;
    if (!std::regex_match(option, m, kOption) || !sbatch_safe(option, /*allow_percent=*/true)) {
      fail("extra", shown(option) +
                        " is not an sbatch option of the form --name or --name=value without "
                        "whitespace, quotes, backslash, '#' or control characters");
    }
    for (const auto& [owned, key] : owned_options()) {
      if (m[1].str() == owned) {
        fail("extra", "--" + owned + " is written by tessera" +
                          (key.empty() ? std::string() : "; set " + key + " instead"));
      }
    }
  }

  std::set<std::string> names;
  for (const std::string& item : split_list(s.env)) {
    static const std::regex kName(R"(^[A-Za-z_][A-Za-z0-9_]*$)");
    const size_t eq = item.find('=');
    const std::string name = item.substr(0, eq);
    if (eq == std::string::npos || !std::regex_match(name, kName)) {
      fail("env", shown(item) + " is not NAME=VALUE with NAME a shell variable name");
    }
    if (item.find('\0') != std::string::npos) fail("env", "a value holds a NUL byte");
    if (!names.insert(name).second) fail("env", name + " is set twice");
    // The job script's own variables (job_script.cc): an export of one would redirect the job.
    static const std::set<std::string> kReserved = {
        "tessera", "launcher", "max_restarts", "array_tag", "recipe",  "run_dir", "ntasks",
        "point",   "recipes",  "run_dirs",     "ntasks_of", "restarts", "signal", "pending",
        "step",    "status",   "why"};
    if (kReserved.count(name)) fail("env", name + " is a variable of the job script itself");
  }

  for (const std::string& module : split_list(s.modules)) {
    if (!is_name(module, "/+")) {
      fail("modules", shown(module) + " is not a module name (letters, digits, '_', '-', '.', '/', "
                                      "'+')");
    }
  }
}

}  // namespace tessera::cluster
