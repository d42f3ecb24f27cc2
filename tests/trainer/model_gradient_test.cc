// Whole-model finite-difference check: for every parameter tensor, the analytic directional
// derivative <grad, d> must match (L(p + h d) - L(p - h d)) / 2h. The model runs in fp32, so
// directions are chosen where the derivative is large (half gradient, half random) and h is
// moderate; routing is verified unchanged between the two evaluations (selection is piecewise
// constant, so the check holds it fixed).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "trainer/model.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 23;
  c.dim = 16;
  c.n_layers = 3;
  c.n_heads = 2;
  c.inter_dim = 24;
  c.moe_inter_dim = 8;
  c.n_experts = 6;
  c.n_shared_experts = 1;
  c.top_k = 2;
  c.n_group = 3;
  c.topk_group = 2;
  c.route_scale = 1.5;
  c.first_dense_layers = 1;
  c.init_std = 0.3;
  c.seq_aux_alpha = 0.05;
  return c;
}

struct Fixture {
  explicit Fixture(const ModelConfig& config) : model(config, cpu) {
    model.params().init(11, config.init_std);
    Rng rng(5);
    for (MoeBlock* moe : model.moe_blocks()) {
      float* bias = model.params().value_ptr(
          model.params().index(moe->prefix() + "moe.gate.bias"));
      for (int64_t e = 0; e < moe->n_experts(); ++e) bias[e] = 0.1f * static_cast<float>(rng.normal());
    }
    tokens.resize(batch * config.row_tokens(seq));
    for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
  }
  // MTP runs in training forwards only (its gradients accumulate meanwhile; the test has read
  // them already).
  double Loss() {
    if (model.config().mtp_depth > 0) {
      return model.TrainMicroBatch(tokens.data(), batch, seq, Scale()).loss;
    }
    return model.EvalMicroBatch(tokens.data(), batch, seq, Scale()).loss;
  }
  LossScale Scale() const {
    const ModelConfig& c = model.config();
    return {1.0 / (batch * seq), 1.0 / batch,
            c.mtp_depth > 0 ? c.mtp_lambda / static_cast<double>(c.mtp_depth) : 0.0};
  }
  std::vector<int32_t> Routing() {
    std::vector<int32_t> all;
    for (size_t i = 0; i < model.moe_blocks().size(); ++i) {
      const int32_t* r = model.routing(static_cast<int>(i));
      all.insert(all.end(), r, r + batch * seq * model.config().top_k);
    }
    return all;
  }
  kernels::CpuBackend cpu;
  Model model;
  int64_t batch = 2, seq = 9;
  std::vector<int32_t> tokens;
};

ModelConfig MlaConfig(int64_t q_lora_rank) {
  ModelConfig c = SmallConfig();
  c.attention = "mla";
  c.n_heads = 3;
  c.q_lora_rank = q_lora_rank;
  c.kv_lora_rank = 10;
  c.qk_nope_head_dim = 6;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 5;
  return c;
}

void ExpectEveryParameterMatchesFiniteDifferences(const ModelConfig& config) {
  Fixture f(config);
  ParamTable& params = f.model.params();
  params.zero_grads();
  f.model.TrainMicroBatch(f.tokens.data(), f.batch, f.seq, f.Scale());
  const std::vector<float> grads(params.grads().data<float>(),
                                 params.grads().data<float>() + params.numel());
  const std::vector<int32_t> routing = f.Routing();

  Rng rng(99);
  int checked = 0;
  for (size_t i = 0; i < params.descs().size(); ++i) {
    const ParamDesc& d = params.descs()[i];
    if (!d.trainable) continue;
    const int64_t n = d.numel();
    const float* g = grads.data() + d.offset;
    double gnorm = 0;
    for (int64_t j = 0; j < n; ++j) gnorm += double(g[j]) * g[j];
    gnorm = std::sqrt(gnorm);
    ASSERT_GT(gnorm, 0.0) << d.name << " has an all-zero gradient";
    // direction: unit gradient + unit random, normalised
    std::vector<double> dir(n);
    double rnorm = 0;
    for (int64_t j = 0; j < n; ++j) {
      dir[j] = rng.normal();
      rnorm += dir[j] * dir[j];
    }
    rnorm = std::sqrt(rnorm);
    double dnorm = 0;
    for (int64_t j = 0; j < n; ++j) {
      dir[j] = g[j] / gnorm + dir[j] / rnorm;
      dnorm += dir[j] * dir[j];
    }
    dnorm = std::sqrt(dnorm);
    double analytic = 0;
    for (int64_t j = 0; j < n; ++j) {
      dir[j] /= dnorm;
      analytic += g[j] * dir[j];
    }
    float* p = params.value_ptr(static_cast<int>(i));
    const std::vector<float> saved(p, p + n);
    auto loss_at = [&](double h, std::vector<int32_t>* route) {
      for (int64_t j = 0; j < n; ++j) p[j] = static_cast<float>(saved[j] + h * dir[j]);
      const double l = f.Loss();
      *route = f.Routing();
      return l;
    };
    double h = 2e-2;
    double numeric = 0;
    bool fixed_routing = false;
    for (int attempt = 0; attempt < 6 && !fixed_routing; ++attempt, h /= 2) {
      std::vector<int32_t> r_plus, r_minus;
      const double lp = loss_at(h, &r_plus);
      const double lm = loss_at(-h, &r_minus);
      fixed_routing = r_plus == routing && r_minus == routing;
      numeric = (lp - lm) / (2 * h);
    }
    std::copy(saved.begin(), saved.end(), p);
    ASSERT_TRUE(fixed_routing) << d.name << ": routing changes under any tested step";
    const double rel = std::abs(numeric - analytic) / std::max(std::abs(numeric), 1e-6);
    EXPECT_LT(rel, 2e-2) << d.name << ": analytic " << analytic << " vs numeric " << numeric;
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(ModelGradient, EveryParameterMatchesFiniteDifferences) {
  ExpectEveryParameterMatchesFiniteDifferences(SmallConfig());
}

TEST(ModelGradient, MlaWithOneQueryProjectionMatchesFiniteDifferences) {
  ExpectEveryParameterMatchesFiniteDifferences(MlaConfig(0));
}

TEST(ModelGradient, MlaWithLowRankQueriesMatchesFiniteDifferences) {
  ExpectEveryParameterMatchesFiniteDifferences(MlaConfig(7));
}

TEST(ModelGradient, MultiTokenPredictionDepth1MatchesFiniteDifferences) {
  ModelConfig c = SmallConfig();
  c.mtp_depth = 1;
  c.mtp_lambda = 0.7;  // large, so the MTP part of each gradient is not lost in rounding
  ExpectEveryParameterMatchesFiniteDifferences(c);
}

TEST(ModelGradient, MultiTokenPredictionDepth2WithMlaMatchesFiniteDifferences) {
  ModelConfig c = MlaConfig(6);
  c.mtp_depth = 2;
  c.mtp_lambda = 0.9;
  ExpectEveryParameterMatchesFiniteDifferences(c);
}

// The balance loss is part of the loss only when seq_aux_alpha > 0, and it is non-negative.
TEST(ModelGradient, BalanceLossIsAddedWhenEnabled) {
  ModelConfig with = SmallConfig();
  ModelConfig without = SmallConfig();
  without.seq_aux_alpha = 0;
  Fixture a(with), b(without);
  const MicroBatchLoss la = a.model.EvalMicroBatch(a.tokens.data(), a.batch, a.seq, a.Scale());
  const MicroBatchLoss lb = b.model.EvalMicroBatch(b.tokens.data(), b.batch, b.seq, b.Scale());
  EXPECT_GT(la.aux, 0);
  EXPECT_EQ(lb.aux, 0);
  EXPECT_NEAR(la.ce_sum, lb.ce_sum, 1e-9 * std::abs(lb.ce_sum));
  EXPECT_NEAR(la.loss, lb.loss + la.aux, 1e-9);
}

}  // namespace
}  // namespace tessera::trainer
