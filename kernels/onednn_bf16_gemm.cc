#include "kernels/onednn_bf16_gemm.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/cpu_simd.h"

namespace tessera::kernels {

namespace {

using dt = dnnl::memory::data_type;

// x (rows, cols) [row stride ldx] rounded to bf16 into out, packed (row stride cols), in the
// order stored: transposes are left to the matmul's strides (reading down columns is slow).
TESSERA_CPU_CLONES void pack_bf16_row(uint16_t* out, const float* x, int64_t cols) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) out[c] = cpu::bf16_bits_f32(x[c]);
}

void pack_bf16(uint16_t* out, const float* x, int64_t ldx, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols >= cpu::kMinParallelWork)
  for (int64_t r = 0; r < rows; ++r) pack_bf16_row(out + r * cols, x + r * ldx, cols);
}

}  // namespace

struct OneDnnBf16Gemm::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  struct Entry {
    dnnl::matmul primitive;
    std::string implementation;
    dnnl::memory::desc scratchpad;
  };
  std::map<Key, Entry> primitives;
  // One scratchpad for every primitive (user mode), grown to the largest: in oneDNN's default
  // mode each cached primitive kept its own (tiny DeepSeek-V3 recipe, bf16: ~90 MiB more peak
  // memory than the emulation after one evaluation's shapes).
  std::vector<uint8_t> scratchpad;
};

OneDnnBf16Gemm::OneDnnBf16Gemm() : state_(std::make_unique<State>()) {}
OneDnnBf16Gemm::~OneDnnBf16Gemm() = default;

void OneDnnBf16Gemm::run(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                         Trans trans_a, const float* b, int64_t ldb, Trans trans_b, float beta,
                         float* c, int64_t ldc) {
  // b stored (n, k) is the row-major GEMM's B = (k, n) transposed, and (k, n) is B itself.
  const Trans gemm_trans_b = trans_b == Trans::kNo ? Trans::kYes : Trans::kNo;
  check_gemm_args("bf16 gemm (oneDNN)", trans_a, gemm_trans_b, m, n, k, lda, ldb, ldc, "oneDNN");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // no products: C = beta * C
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return;
  }
  // As stored: a is (m, k) or, transposed, (k, m); b is (n, k) or (k, n).
  const bool a_t = trans_a == Trans::kYes, b_t = trans_b == Trans::kYes;
  a_.resize(static_cast<size_t>(m * k));
  b_.resize(static_cast<size_t>(n * k));
  pack_bf16(a_.data(), a, lda, a_t ? k : m, a_t ? m : k);
  pack_bf16(b_.data(), b, ldb, b_t ? k : n, b_t ? n : k);

  uint32_t beta_bits;
  std::memcpy(&beta_bits, &beta, sizeof beta_bits);
  const Key key{m, n, k, ldc, beta_bits, a_t, b_t};
  // src A (m, k); weights (k, n) = B^T; dst (m, n) with row stride ldc. Strides say how each
  // packed operand is laid out.
  using dims = dnnl::memory::dims;
  const dnnl::memory::desc a_md({m, k}, dt::bf16, a_t ? dims{1, m} : dims{k, 1});
  const dnnl::memory::desc b_md({k, n}, dt::bf16, b_t ? dims{n, 1} : dims{1, k});
  const dnnl::memory::desc c_md({m, n}, dt::f32, {ldc, 1});
  auto it = state_->primitives.find(key);
  if (it == state_->primitives.end()) {
    if (state_->primitives.size() >= kMaxPrimitives) state_->primitives.clear();
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr,
                                            state_->engine);
      it = state_->primitives
               .emplace(key, State::Entry{dnnl::matmul(pd), pd.impl_info_str(),
                                          pd.scratchpad_desc()})
               .first;
    } catch (const dnnl::error& e) {
      throw std::runtime_error("bf16 gemm (oneDNN): no matmul for m=" + std::to_string(m) +
                               " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                               " ldc=" + std::to_string(ldc) + ": " + e.what());
    }
    ++created_;
  }
  last_impl_ = it->second.implementation;
  dnnl::memory a_mem(a_md, state_->engine, a_.data());
  dnnl::memory b_mem(b_md, state_->engine, b_.data());
  dnnl::memory c_mem(c_md, state_->engine, c);
  const dnnl::memory::desc& scratch_md = it->second.scratchpad;
  if (state_->scratchpad.size() < scratch_md.get_size()) {
    state_->scratchpad.resize(scratch_md.get_size());
  }
  dnnl::memory scratch_mem(scratch_md, state_->engine, state_->scratchpad.data());
  it->second.primitive.execute(state_->stream, {{DNNL_ARG_SRC, a_mem},
                                                {DNNL_ARG_WEIGHTS, b_mem},
                                                {DNNL_ARG_DST, c_mem},
                                                {DNNL_ARG_SCRATCHPAD, scratch_mem}});
  state_->stream.wait();
}

}  // namespace tessera::kernels
