// The recipe's value checks (checks.h). Per-key rules come from the schema's table; only the
// checks that relate two or more keys are written out by hand (check_cross_fields), and the
// layout's rules live in layout.cc, shared with training and the planner.
#include "trainer/recipe/checks.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <variant>
#include <vector>

#include "trainer/recipe/layout.h"
#include "trainer/recipe/schema.h"
#include "trainer/recipe/yaml_scalars.h"
#include "trainer/step_range.h"

namespace tessera::trainer {
namespace recipe_detail {
namespace {

class Checker {
 public:
  Checker(const Recipe& recipe, const Origins& origins) : r_{recipe}, origins_{origins} {}

  void run() {
    for (const Field& f : fields()) check_field(f);
    check_cross_fields();
  }

 private:
  // Message: "<origin of keys[0]>[, <other --set origins>]: keys[0]: what".
  [[noreturn]] void fail(const std::vector<std::string_view>& keys, const std::string& what) const {
    const std::string_view primary = keys.front();
    const Origin first = origins_.of(primary);
    std::string prefix = first.source;
    std::set<std::string> named{first.source};
    for (std::string_view k : keys) {
      const Origin o = origins_.of(k);
      if (o.from_override && named.insert(o.source).second) prefix += ", " + o.source;
    }
    throw RecipeError(prefix + ": " + std::string(primary) + ": " + what + position(first));
  }

  void check_field(const Field& f) const {
    const Constraint& c = f.check;
    const std::string text = value_text(f, r_);
    if (const auto* get = std::get_if<Getter<std::string>>(&f.get)) {
      const std::string& s = read(*get, r_);
      if (c.non_empty && s.empty()) fail({f.key}, "must not be empty");
      if (c.choices.empty()) return;
      if (std::find(c.planned.begin(), c.planned.end(), s) != c.planned.end()) {
        fail({f.key}, s + " is not implemented yet");
      }
      if (std::find(c.choices.begin(), c.choices.end(), s) == c.choices.end()) {
        std::string allowed;
        for (std::string_view a : c.choices)
          allowed += (allowed.empty() ? "" : ", ") + std::string(a);
        std::string hint = closest(s, c.choices);
        fail({f.key}, "unknown value '" + s + "' (allowed: " + allowed + ")" +
                          (hint.empty() ? "" : "; did you mean " + hint + "?"));
      }
      return;
    }
    double v;
    if (const auto* gi = std::get_if<Getter<int64_t>>(&f.get)) {
      v = static_cast<double>(read(*gi, r_));
    } else if (const auto* gd = std::get_if<Getter<double>>(&f.get)) {
      v = read(*gd, r_);
      if (!std::isfinite(v)) fail({f.key}, "must be a finite number, got " + text);
    } else {
      return;  // bools and the uint64 seed have no range
    }
    // Written as "ok = ..." so that NaN fails.
    const bool min_ok = !c.min || (c.min_open ? v > *c.min : v >= *c.min);
    const bool max_ok = !c.max || (c.max_open ? v < *c.max : v <= *c.max);
    auto bound = [](double b) {  // shortest form: "2", "0", "1", not "2.0"
      char buf[64];
      return std::string(buf, std::to_chars(buf, buf + sizeof buf, b).ptr);
    };
    if (min_ok && max_ok) {
      if (c.ceiling && v > *c.ceiling)
        fail({f.key}, "must be <= " + bound(*c.ceiling) + ", got " + text);
      return;
    }
    if (c.min && c.max) {
      fail({f.key}, "must be in " + std::string(c.min_open ? "(" : "[") + bound(*c.min) + ", " +
                        bound(*c.max) + (c.max_open ? ")" : "]") + ", got " + text);
    }
    if (c.min)
      fail({f.key}, std::string(c.min_open ? "must be > " : "must be >= ") + bound(*c.min) +
                        ", got " + text);
    fail({f.key},
         std::string(c.max_open ? "must be < " : "must be <= ") + bound(*c.max) + ", got " + text);
  }

  void check_cross_fields() const {
    const ModelConfig& m = r_.model;
    auto s = [](auto v) { return std::to_string(v); };

    if (m.attention == "mla") {
      if (m.qk_rope_head_dim % 2 != 0) {
        fail({"model.qk_rope_head_dim"},
             "must be even (RoPE rotates pairs), got " + s(m.qk_rope_head_dim));
      }
      if (m.v_head_dim > m.qk_nope_head_dim + m.qk_rope_head_dim) {
        fail({"model.v_head_dim", "model.qk_nope_head_dim", "model.qk_rope_head_dim"},
             "must be <= model.qk_nope_head_dim + model.qk_rope_head_dim (" +
                 s(m.qk_nope_head_dim + m.qk_rope_head_dim) + ", the attention kernel pads v "
                 "to the query/key head width), got " + s(m.v_head_dim));
      }
    } else if (m.dim % m.n_heads != 0) {
      fail({"model.n_heads", "model.dim"}, s(m.n_heads) + " does not divide model.dim " + s(m.dim));
    } else if ((m.dim / m.n_heads) % 2 != 0) {
      fail({"model.n_heads", "model.dim"}, "head_dim = model.dim / model.n_heads = " + s(m.dim) +
                                               " / " + s(m.n_heads) + " = " + s(m.dim / m.n_heads) +
                                               " must be even (RoPE rotates pairs)");
    }
    if (m.top_k > m.n_experts) {
      fail({"model.top_k", "model.n_experts"},
           "must be <= model.n_experts (" + s(m.n_experts) + "), got " + s(m.top_k));
    }
    if (m.n_experts % m.n_group != 0) {
      fail({"model.n_group", "model.n_experts"},
           s(m.n_group) + " does not divide model.n_experts " + s(m.n_experts));
    }
    if (m.n_group > 1 && m.n_experts / m.n_group < 2) {
      fail({"model.n_group", "model.n_experts"},
           "each group needs >= 2 experts (a group's score sums its top-2), but model.n_experts " +
               s(m.n_experts) + " / model.n_group " + s(m.n_group) + " = " +
               s(m.n_experts / m.n_group));
    }
    if (m.topk_group > m.n_group) {
      fail({"model.topk_group", "model.n_group"},
           "must be <= model.n_group (" + s(m.n_group) + "), got " + s(m.topk_group));
    }
    const int64_t reachable = m.topk_group * (m.n_experts / m.n_group);
    if (m.top_k > reachable) {
      fail({"model.top_k", "model.topk_group", "model.n_experts", "model.n_group"},
           "must be <= model.topk_group * model.n_experts / model.n_group (" + s(m.topk_group) +
               " * " + s(m.n_experts) + " / " + s(m.n_group) + " = " + s(reachable) + "), got " +
               s(m.top_k));
    }
    if (m.first_dense_layers > m.n_layers) {
      fail({"model.first_dense_layers", "model.n_layers"},
           "must be <= model.n_layers (" + s(m.n_layers) + "), got " + s(m.first_dense_layers));
    }

    // The parallel layout's rules: one validator for loading, training and the planner.
    if (const std::optional<LayoutProblem> problem = find_layout_problem(r_, /*world_size=*/0, 0)) {
      fail(std::vector<std::string_view>(problem->keys.begin(), problem->keys.end()),
           problem->what);
    }

    std::optional<StepRange> traced;
    try {
      traced = parse_step_range(r_.logging.trace_steps);
    } catch (const std::invalid_argument& e) {
      fail({"logging.trace_steps"}, "'" + r_.logging.trace_steps + "': " + e.what());
    }
    if (traced && traced->last > r_.train.steps) {
      fail({"logging.trace_steps", "train.steps"},
           "'" + r_.logging.trace_steps + "' goes past the last step, train.steps = " +
               s(r_.train.steps));
    }
  }

  const Recipe& r_;
  const Origins& origins_;
};

}  // namespace

void check_recipe(const Recipe& recipe, const Origins& origins) { Checker(recipe, origins).run(); }

}  // namespace recipe_detail

void validate_recipe(const Recipe& recipe) {
  const recipe_detail::Origins origins(recipe.source.empty() ? "recipe" : recipe.source);
  recipe_detail::check_recipe(recipe, origins);
}

}  // namespace tessera::trainer
