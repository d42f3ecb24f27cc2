#include "cluster/sweep_report.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "cluster/process.h"

namespace tessera::cluster {

namespace fs = std::filesystem;

namespace {

// A number from one flat JSON object line written by trainer::MetricsLine; NaN if absent/null.
double json_number(const std::string& line, const std::string& key) {
  const std::string tag = "\"" + key + "\":";
  const size_t at = line.find(tag);
  if (at == std::string::npos) return std::nan("");
  const char* begin = line.c_str() + at + tag.size();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  return end == begin ? std::nan("") : v;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::string num(double v, int precision = 6) {
  if (!std::isfinite(v)) return "";
  std::ostringstream o;
  o.precision(precision);
  o << v;
  return o.str();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

struct Step {
  double loss, tokens_per_s, step_s, exposed_comm_s, comm_s, bubble, rss;
};

struct Row {
  int index = 0;
  std::string layout, overrides, status;
  long long world = 0;
  std::map<long long, Step> steps;  // last record of each step
  double val_loss = std::nan("");
  double tokens_per_s = std::nan(""), per_rank = std::nan(""), efficiency = std::nan("");
  double mfu = std::nan(""), bubble = std::nan(""), exposed = std::nan(""), comm = std::nan("");
  double step_s = std::nan(""), rss = std::nan(""), final_loss = std::nan("");
};

std::string layout_of(const trainer::Recipe& r) {
  const auto& p = r.parallel;
  std::string s = "pp" + std::to_string(p.pp) + " dp" + std::to_string(p.dp) + " ep" +
                  std::to_string(p.ep) + " " + p.schedule + " mb" + std::to_string(p.micro_batches);
  if (p.virtual_stages > 1) s += " v" + std::to_string(p.virtual_stages);
  return s;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

double model_flops_per_token(const trainer::Recipe& recipe) {
  const auto& m = recipe.model;
  const double d = static_cast<double>(m.dim);
  const double attn = 4 * d * d;  // wq, wk, wv, wo
  const double dense = 3 * d * static_cast<double>(m.inter_dim);
  const double moe = d * static_cast<double>(m.n_experts) +  // gate
                     static_cast<double>(m.top_k + m.n_shared_experts) * 3 * d *
                         static_cast<double>(m.moe_inter_dim);
  const double dense_layers = static_cast<double>(std::min(m.first_dense_layers, m.n_layers));
  const double moe_layers = static_cast<double>(m.n_layers) - dense_layers;
  const double weights = static_cast<double>(m.n_layers) * attn + dense_layers * dense +
                         moe_layers * moe + d * static_cast<double>(m.vocab_size);
  return 6 * weights +
         6 * static_cast<double>(m.n_layers) * d * static_cast<double>(recipe.train.seq_len);
}

std::vector<std::string> write_sweep_report(const std::string& dir_text,
                                            const ReportOptions& options) {
  const fs::path dir(dir_text);
  std::vector<Row> rows;
  for (int i = 0; fs::exists(dir / "points" / std::to_string(i) / "recipe.yaml"); ++i) {
    const fs::path point = dir / "points" / std::to_string(i);
    Row row;
    row.index = i;
    const trainer::Recipe recipe = trainer::load_recipe((point / "recipe.yaml").string());
    row.layout = layout_of(recipe);
    row.world = recipe.parallel.pp * recipe.parallel.dp;
    std::istringstream ov(read_text(point / "overrides.txt"));
    for (std::string line; std::getline(ov, line);) {
      if (!line.empty()) row.overrides += (row.overrides.empty() ? "" : " ") + line;
    }
    const fs::path run = recipe.run.dir;
    std::ifstream metrics(run / "metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) {
      const double step = json_number(line, "step");
      if (!std::isfinite(step)) continue;
      row.steps[static_cast<long long>(step)] =
          Step{json_number(line, "loss"),           json_number(line, "tokens_per_s"),
               json_number(line, "step_s"),         json_number(line, "exposed_comm_s"),
               json_number(line, "comm_s"),         json_number(line, "bubble_fraction"),
               json_number(line, "peak_rss_mib")};
      const double val = json_number(line, "val_loss");
      if (std::isfinite(val)) row.val_loss = val;
    }
    const long long want = recipe.train.steps;
    row.status = fs::exists(run / "DONE") ? "done"
                 : row.steps.empty()      ? "no metrics"
                 : row.steps.rbegin()->first >= want ? "done"
                                                     : "incomplete";
    std::vector<double> tps, step_s, bubble, exposed, comm;
    for (const auto& [n, s] : row.steps) {
      if (n == row.steps.begin()->first && row.steps.size() > 1) continue;  // warm-up step
      tps.push_back(s.tokens_per_s);
      step_s.push_back(s.step_s);
      bubble.push_back(s.bubble);
      exposed.push_back(s.exposed_comm_s);
      comm.push_back(s.comm_s);
    }
    for (const auto& [n, s] : row.steps) {
      if (std::isfinite(s.rss)) row.rss = std::isfinite(row.rss) ? std::max(row.rss, s.rss) : s.rss;
    }
    row.tokens_per_s = median(tps);
    row.per_rank = row.tokens_per_s / static_cast<double>(row.world);
    row.step_s = median(step_s);
    row.bubble = mean(bubble);
    row.exposed = mean(exposed);
    row.comm = mean(comm);
    if (!row.steps.empty()) row.final_loss = row.steps.rbegin()->second.loss;
    if (options.peak_gflops_per_rank > 0) {
      row.mfu = row.tokens_per_s * model_flops_per_token(recipe) /
                (static_cast<double>(row.world) * options.peak_gflops_per_rank * 1e9);
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) throw std::runtime_error(dir_text + ": no points/<i>/recipe.yaml (not a sweep directory)");

  // Baseline of the scaling efficiency: the smallest world size with a throughput.
  const Row* base = nullptr;
  for (const Row& r : rows) {
    if (std::isfinite(r.per_rank) && (!base || r.world < base->world)) base = &r;
  }
  for (Row& r : rows) {
    if (base) r.efficiency = r.per_rank / base->per_rank;
  }

  std::vector<std::string> notes;
  if (base) {
    notes.push_back("scaling efficiency = (tokens/s per rank) / that of point " +
                    std::to_string(base->index) + " (world size " + std::to_string(base->world) + ")");
  }
  notes.push_back("tokens/s: median over the steps after the first; bubble and exposed comm: means");
  if (options.peak_gflops_per_rank <= 0) {
    notes.push_back("mfu: empty: the peak FLOP rate of a rank is unknown (pass --peak-gflops)");
  }
  if (std::none_of(rows.begin(), rows.end(), [](const Row& r) { return std::isfinite(r.rss); })) {
    notes.push_back("peak_rss_mib: empty: the trainer does not log peak_rss_mib in metrics.jsonl");
  }
  for (const Row& r : rows) {
    if (r.status != "done") notes.push_back("point " + std::to_string(r.index) + ": " + r.status);
  }

  {
    std::ofstream csv(dir / "report.csv", std::ios::trunc);
    csv << "point,layout,world,overrides,status,steps,tokens_per_s,tokens_per_s_per_rank,"
           "scaling_efficiency,mfu,bubble_fraction,exposed_comm_s,comm_s,step_s,peak_rss_mib,"
           "final_loss,val_loss\n";
    for (const Row& r : rows) {
      csv << r.index << "," << csv_field(r.layout) << "," << r.world << ","
          << csv_field(r.overrides) << "," << r.status << "," << r.steps.size() << ","
          << num(r.tokens_per_s) << "," << num(r.per_rank) << "," << num(r.efficiency, 4) << ","
          << num(r.mfu, 4) << "," << num(r.bubble, 4) << "," << num(r.exposed, 4) << ","
          << num(r.comm, 4) << "," << num(r.step_s, 4) << "," << num(r.rss) << ","
          << num(r.final_loss, 7) << "," << num(r.val_loss, 7) << "\n";
    }
    if (!csv) throw std::runtime_error((dir / "report.csv").string() + ": write failed");
  }
  {
    std::ofstream out(dir / "report-notes.txt", std::ios::trunc);
    for (const std::string& n : notes) out << n << "\n";
  }
  if (!options.plots) return notes;

  // Plot data: points by world size; one loss file per point. Paths go into gnuplot strings,
  // where a quote would end the string and a backtick would run a command.
  const fs::path data = dir / "report";
  if (data.string().find_first_of("'`\r\n") != std::string::npos) {
    throw std::runtime_error(dir_text + ": a quote, backtick or newline in the path: cannot plot; "
                             "report.csv is written");
  }
  fs::create_directories(data);
  std::vector<const Row*> by_world;
  for (const Row& r : rows) by_world.push_back(&r);
  std::stable_sort(by_world.begin(), by_world.end(),
                   [](const Row* a, const Row* b) { return a->world < b->world; });
  {
    std::ofstream t(data / "throughput.dat", std::ios::trunc);
    t << "# world tokens_per_s ideal efficiency point\n";
    for (const Row* r : by_world) {
      if (!std::isfinite(r->tokens_per_s)) continue;
      t << r->world << " " << num(r->tokens_per_s) << " "
        << num(base ? base->per_rank * static_cast<double>(r->world) : std::nan("")) << " "
        << num(r->efficiency) << " " << r->index << "\n";
    }
  }
  std::string loss_plots;
  for (const Row& r : rows) {
    const std::string name = "loss-" + std::to_string(r.index) + ".dat";
    std::ofstream l(data / name, std::ios::trunc);
    for (const auto& [n, s] : r.steps) l << n << " " << num(s.loss, 7) << "\n";
    if (r.steps.empty()) continue;
    std::string title = std::to_string(r.index) + ": " + r.layout;
    for (char& c : title) {
      if (c == '"' || c == '\\') c = ' ';
    }
    loss_plots += std::string(loss_plots.empty() ? "" : ", ") + "'" + (data / name).string() +
                  "' using 1:2 with lines title \"" + title + "\"";
  }
  const fs::path script = data / "plots.gp";
  {
    std::ofstream g(script, std::ios::trunc);
    const std::string t = (data / "throughput.dat").string();
    g << "set terminal png size 900,600\n"
      << "set grid\nset key top left\n"
      << "set output '" << (dir / "throughput.png").string() << "'\n"
      << "set title 'Throughput vs world size'\nset xlabel 'processes'\nset ylabel 'tokens/s'\n"
      << "plot '" << t << "' using 1:2 with linespoints pt 7 title 'measured', '" << t
      << "' using 1:3 with lines dt 2 title 'ideal (linear from the smallest)'\n"
      << "set output '" << (dir / "scaling_efficiency.png").string() << "'\n"
      << "set title 'Scaling efficiency vs world size'\nset ylabel 'tokens/s per rank, relative'\n"
      << "set yrange [0:*]\n"
      << "plot '" << t << "' using 1:4 with linespoints pt 7 title 'efficiency', 1 dt 2 title 'ideal'\n"
      << "set output '" << (dir / "loss.png").string() << "'\n"
      << "set title 'Training loss'\nset xlabel 'step'\nset ylabel 'loss'\nset yrange [*:*]\n"
      << "set key top right\n"
      << "plot " << (loss_plots.empty() ? "0 title 'no metrics'" : loss_plots) << "\n";
  }
  const ProcessResult r = run_process({"gnuplot", script.string()}, false);
  if (r.status != 0) {
    throw std::runtime_error("gnuplot " + script.string() + " failed (exit status " +
                             std::to_string(r.status) + "); report.csv is written");
  }
  return notes;
}

}  // namespace tessera::cluster
