// A toy pipelined model for the executor tests, shared by the fake-comm unit tests
// (pipeline_executor_test.cc) and the MPI test (pipeline_executor_mpitest.cc).
//
// Model block k (the block of a virtual stage under the schedule's Placement) is the elementwise
// affine map y = a_k * x + b_k on vectors of `elements` floats. A path's first virtual stage's
// input is toy_input(mb, i); its last one's loss is sum_i w_mb[i] * y[i]. Backward: din = a_vs * dout, and the weight gradients accumulate
// da_k += sum(dout * x), db_k += sum(dout) (over the micro-batches of the holder's path: a
// mirrored block's two holders each sum their own direction's). Activations travel as floats computed by the same
// expressions as the serial reference, so losses must match it bitwise; weight gradients are sums
// over micro-batches in the schedule's W order and match to rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"

namespace tessera::parallel::testing {

inline float toy_input(int mb, int64_t i) {
  return 0.25f + 0.125f * static_cast<float>(mb) - 0.03125f * static_cast<float>(i % 7);
}
inline float toy_loss_weight(int mb, int64_t i) {
  return 1.0f + 0.0625f * static_cast<float>(mb) - 0.015625f * static_cast<float>(i % 11);
}
inline float toy_a(int vs) { return 0.75f + 0.125f * static_cast<float>(vs); }
inline float toy_b(int vs) { return 0.0625f * static_cast<float>(vs + 1) - 0.25f; }
inline float toy_affine(float a, float x, float b) { return a * x + b; }

inline double toy_loss(int mb, const std::vector<float>& y) {
  double loss = 0;
  for (size_t i = 0; i < y.size(); ++i) loss += static_cast<double>(toy_loss_weight(mb, i) * y[i]);
  return loss;
}
inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}
inline double sum(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += v;
  return s;
}

// "F3c0", "B3c0", "W3c0": one StageCompute call.
inline std::string call_name(const char* kind, int mb, int chunk) {
  return kind + std::to_string(mb) + "c" + std::to_string(chunk);
}

// The StageCompute calls the executor must make on `stage`, in order.
inline std::vector<std::string> expected_calls(const Schedule& s, int stage) {
  std::vector<std::string> calls;
  for (const Instruction& inst : s.per_stage[stage]) {
    switch (inst.op) {
      case Op::kForward:
        calls.push_back(call_name("F", inst.micro_batch, inst.chunk));
        break;
      case Op::kBackward:
        calls.push_back(call_name("B", inst.micro_batch, inst.chunk));
        calls.push_back(call_name("W", inst.micro_batch, inst.chunk));
        break;
      case Op::kBackwardInput:
        calls.push_back(call_name("B", inst.micro_batch, inst.chunk));
        break;
      case Op::kBackwardWeight:
        calls.push_back(call_name("W", inst.micro_batch, inst.chunk));
        break;
      case Op::kForwardBackward:
        calls.push_back(call_name("F", inst.micro_batch, inst.chunk));
        calls.push_back(call_name("B", inst.micro_batch_b, inst.chunk_b));
        calls.push_back(call_name("W", inst.micro_batch_b, inst.chunk_b));
        break;
      default:
        break;
    }
  }
  return calls;
}

// One stage of the toy model. Throws std::logic_error when the executor breaks the
// StageCompute contract (wrong null pointers, an F twice, a W before its B).
class ToyStage final : public StageCompute {
 public:
  ToyStage(const Schedule& s, int stage, int64_t elements)
      : placement_(s.placement), chunks_(s.chunks()), micro_batches_(s.micro_batches),
        stage_(stage), elements_(elements) {
    begin_step();
  }

  // Forget the previous step (weights stay; gradients and losses restart from zero).
  void begin_step() {
    const size_t units = static_cast<size_t>(micro_batches_) * chunks_;
    x_.assign(units, {});
    g_.assign(units, {});
    losses_.assign(micro_batches_, std::numeric_limits<double>::quiet_NaN());
    da_.assign(chunks_, 0.0);
    db_.assign(chunks_, 0.0);
    calls_.clear();
  }
  // Forward(fail_mb, any chunk) throws std::runtime_error (fault injection); -1: never.
  void fail_at_forward(int mb) { fail_mb_ = mb; }

  void Forward(int mb, int chunk, const float* in, float* out) override {
    calls_.push_back(call_name("F", mb, chunk));
    if (mb == fail_mb_) {
      throw std::runtime_error("injected failure on stage " + std::to_string(stage_) + " at F" +
                               std::to_string(mb));
    }
    const int vs = placement_.virtual_stage(stage_, chunk);
    const int k = placement_.block(vs);
    expect_pointer(in, !placement_.first(vs), "Forward in", mb, chunk);
    expect_pointer(out, !placement_.last(vs), "Forward out", mb, chunk);
    std::vector<float>& x = x_[unit(mb, chunk)];
    if (!x.empty()) throw std::logic_error("toy: F" + std::to_string(mb) + " ran twice");
    x.resize(elements_);
    std::vector<float> y(elements_);
    for (int64_t i = 0; i < elements_; ++i) {
      x[i] = in ? in[i] : toy_input(mb, i);
      y[i] = toy_affine(toy_a(k), x[i], toy_b(k));
    }
    if (out) {
      for (int64_t i = 0; i < elements_; ++i) out[i] = y[i];
    } else {
      losses_[mb] = toy_loss(mb, y);
    }
  }

  void BackwardInput(int mb, int chunk, const float* dout, float* din) override {
    calls_.push_back(call_name("B", mb, chunk));
    const int vs = placement_.virtual_stage(stage_, chunk);
    expect_pointer(dout, !placement_.last(vs), "BackwardInput dout", mb, chunk);
    expect_pointer(din, !placement_.first(vs), "BackwardInput din", mb, chunk);
    if (x_[unit(mb, chunk)].empty()) throw std::logic_error("toy: B before F");
    std::vector<float>& g = g_[unit(mb, chunk)];
    g.resize(elements_);
    for (int64_t i = 0; i < elements_; ++i) {
      g[i] = dout ? dout[i] : toy_loss_weight(mb, i);
      if (din) din[i] = toy_a(placement_.block(vs)) * g[i];
    }
  }

  void BackwardWeight(int mb, int chunk) override {
    calls_.push_back(call_name("W", mb, chunk));
    std::vector<float>& x = x_[unit(mb, chunk)];
    std::vector<float>& g = g_[unit(mb, chunk)];
    if (g.empty()) throw std::logic_error("toy: W" + std::to_string(mb) + " before its B");
    da_[chunk] += dot(g, x);
    db_[chunk] += sum(g);
    g.clear();
  }

  int stage() const { return stage_; }
  const std::vector<double>& losses() const { return losses_; }  // [mb]; NaN: not this stage
  const std::vector<double>& da() const { return da_; }          // [chunk]
  const std::vector<double>& db() const { return db_; }
  const std::vector<std::string>& calls() const { return calls_; }

 private:
  size_t unit(int mb, int chunk) const { return static_cast<size_t>(mb) * chunks_ + chunk; }
  void expect_pointer(const void* p, bool present, const char* what, int mb, int chunk) const {
    if ((p != nullptr) != present) {
      throw std::logic_error(std::string("toy stage ") + std::to_string(stage_) + ": " + what +
                             " of " + call_name("", mb, chunk) +
                             (present ? " is null" : " is not null"));
    }
  }

  Placement placement_;
  int chunks_, micro_batches_, stage_;
  int64_t elements_;
  int fail_mb_ = -1;
  std::vector<std::vector<float>> x_, g_;  // [unit]: saved input and output gradient
  std::vector<double> losses_, da_, db_;
  std::vector<std::string> calls_;
};

struct ToyReference {
  std::vector<double> losses;               // [mb]
  std::vector<std::vector<double>> da, db;  // [path][block]: sums over the path's micro-batches
};

// The whole model on one process, micro-batch after micro-batch.
inline ToyReference toy_serial_reference(const Placement& placement, int micro_batches,
                                         int64_t elements) {
  const int blocks = placement.blocks();
  ToyReference ref;
  ref.da.assign(placement.paths(), std::vector<double>(blocks, 0.0));
  ref.db = ref.da;
  for (int mb = 0; mb < micro_batches; ++mb) {
    const int path = placement.path_of(mb);
    std::vector<std::vector<float>> xs(blocks, std::vector<float>(elements));
    std::vector<float> y(elements);
    for (int64_t i = 0; i < elements; ++i) y[i] = toy_input(mb, i);
    for (int k = 0; k < blocks; ++k) {
      xs[k] = y;
      for (int64_t i = 0; i < elements; ++i) y[i] = toy_affine(toy_a(k), xs[k][i], toy_b(k));
    }
    ref.losses.push_back(toy_loss(mb, y));
    std::vector<float> g(elements);
    for (int64_t i = 0; i < elements; ++i) g[i] = toy_loss_weight(mb, i);
    for (int k = blocks - 1; k >= 0; --k) {
      ref.da[path][k] += dot(g, xs[k]);
      ref.db[path][k] += sum(g);
      for (int64_t i = 0; i < elements; ++i) g[i] = toy_a(k) * g[i];
    }
  }
  return ref;
}

// This stage's results after one step against the reference: "" or the mismatches.
inline std::string check_toy_stage(const Schedule& s, const ToyStage& toy,
                                   const ToyReference& ref) {
  std::ostringstream f;
  f.precision(17);
  const int st = toy.stage();
  const std::string where = s.name + " pp=" + std::to_string(s.pp()) + " m=" +
                            std::to_string(s.micro_batches) + " v=" + std::to_string(s.chunks()) +
                            " stage " + std::to_string(st) + ": ";
  const Placement& p = s.placement;
  for (int mb = 0; mb < s.micro_batches; ++mb) {
    // The last virtual stage of the micro-batch's path computes its loss.
    const int last_vs = (p.path_of(mb) + 1) * p.blocks() - 1;
    const bool holds_loss = p.stage_of(last_vs) == st;
    const double got = toy.losses()[mb];
    if (holds_loss ? got != ref.losses[mb] : !std::isnan(got)) {
      f << where << "loss[" << mb << "] = " << got << ", expected "
        << (holds_loss ? ref.losses[mb] : std::numeric_limits<double>::quiet_NaN()) << "\n";
    }
  }
  auto close = [](double got, double want) {
    return std::abs(got - want) <= 1e-12 * std::max(1.0, std::abs(want));
  };
  for (int c = 0; c < s.chunks(); ++c) {
    const int vs = p.virtual_stage(st, c);
    const double da = ref.da[p.path_of_virtual(vs)][p.block(vs)];
    const double db = ref.db[p.path_of_virtual(vs)][p.block(vs)];
    if (!close(toy.da()[c], da)) {
      f << where << "da[vs " << vs << "] = " << toy.da()[c] << ", expected " << da << "\n";
    }
    if (!close(toy.db()[c], db)) {
      f << where << "db[vs " << vs << "] = " << toy.db()[c] << ", expected " << db << "\n";
    }
  }
  const std::vector<std::string> want = expected_calls(s, st);
  if (toy.calls() != want) {
    f << where << "StageCompute calls differ from the schedule:\n  got     ";
    for (const auto& c : toy.calls()) f << " " << c;
    f << "\n  expected";
    for (const auto& c : want) f << " " << c;
    f << "\n";
  }
  return f.str();
}

}  // namespace tessera::parallel::testing
