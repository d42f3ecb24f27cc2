// MoeBlock's pieces for node-aware dispatch (parallel/node_dispatch.h), used when an EP group
// spans nodes and parallel.node_aware_dispatch is on: rows cross to each destination node once,
// are fanned out to the experts' owners inside it, and a node's gated outputs are summed before
// they cross back. The flat path's pieces and the shared ones live in moe_block.cc.
#include "trainer/layers/moe_block.h"

namespace tessera::trainer {

parallel::Work MoeBlock::DispatchRoutes(Context& c) {
  const int64_t R = c.node_plan.total_across_recv(), K = shape_.top_k;
  c.entries_in.resize(R * 2 * K);
  c.routes_in = parallel::dispatch_route_entries(*ep_host_comm_, c.node_plan, c.node_send.entries,
                                                 c.entries_in);
  CountCrossNode(c, static_cast<int64_t>(sizeof(int32_t)) * 2 * K *
                        parallel::off_node(c.node_plan.across_send_rows, ep_rank_,
                                           ep_ranks_per_node_));
  return c.routes_in;
}

parallel::Work MoeBlock::ForwardWithinNode(Context& c) {
  const int64_t D = dim_, K = shape_.top_k, R = c.node_plan.total_across_recv();
  c.routes_in.wait();
  c.rows_in.wait();
  if (dispatch_format_ != parallel::RowFormat::kFp32) {  // the first hop's packed rows
    DecodeRows(c, dispatch_format_, c.x_recv, R, c.xr1);
  }
  c.node_forward = parallel::plan_node_forward(c.node_plan, c.entries_in);
  const int64_t T = c.node_forward.total_send_rows();
  kernels::Backend& be = table_.backend();
  be.copy_from_host(c.row_of_pos, c.node_forward.row_of_pos.data(), sizeof(int32_t) * T);
  be.copy_from_host(c.pos_of_entry, c.node_forward.pos_of_entry.data(), sizeof(int32_t) * R * K);
  be.copy_from_host(c.gates2, c.node_forward.gates.data(), sizeof(float) * R * K);
  table_.ops().moe_permute(c.xs2, c.xr1, c.row_of_pos, T, 1, D);
  c.segments = c.node_plan.segments;
  c.rows.clear();
  for (const parallel::ExpertSegment& s : c.segments) {
    c.rows.push_back({s.local_expert, s.offset, s.rows});
  }
  c.expert_rows = c.node_plan.total_within_recv();
  return {};
}

parallel::Work MoeBlock::RowsToExpertsWithinNode(Context& c, float* expert_rows,
                                                  parallel::RowFormat format) {
  const int64_t D = dim_, T = c.node_forward.total_send_rows();
  CountExchange(c, expert_rows == c.xe ? exchange_bytes_.dispatch : exchange_bytes_.dispatch_grads,
                c.node_forward.send_rows, format);
  if (format != parallel::RowFormat::kFp32) {
    // Decoded into expert_rows by ExpertsForward / ExpertsBackwardInput. Forward: the rows were
    // decoded from the first hop, so re-encoding them is lossless (row_codec.h); backward: the
    // gated dy rows (fp32 until here) are rounded once, as the flat path's dispatch grads.
    const int64_t words = parallel::row_words(format, D);
    EncodeRows(c, format, c.xs2, T, c.x2_send);
    c.x2_recv.resize(static_cast<size_t>(c.expert_rows * words));
    return parallel::dispatch_within_packed(*ep_host_comm_, c.node_plan, c.node_forward,
                                            c.x2_send, c.x2_recv, words);
  }
  return parallel::dispatch_within(*ep_comm_, c.node_plan, c.node_forward,
                                   {c.xs2, static_cast<size_t>(T * D)},
                                   {expert_rows, static_cast<size_t>(c.expert_rows * D)}, D);
}

parallel::Work MoeBlock::RowsFromExpertsWithinNode(Context& c, const float* expert_rows,
                                                    parallel::RowFormat format) {
  const int64_t D = dim_, T = c.node_forward.total_send_rows();
  CountExchange(c, expert_rows == c.ye ? exchange_bytes_.combine : exchange_bytes_.combine_grads,
                c.node_plan.within_recv_rows, format);
  if (format != parallel::RowFormat::kFp32) {  // into ys2 by ReduceWithinNode / ReduceGrads...
    const int64_t words = parallel::row_words(format, D);
    EncodeRows(c, format, expert_rows, c.expert_rows, c.y_send);
    c.y_recv.resize(static_cast<size_t>(T * words));
    return parallel::combine_within_packed(*ep_host_comm_, c.node_plan, c.node_forward, c.y_send,
                                           c.y_recv, words);
  }
  return parallel::combine_within(*ep_comm_, c.node_plan, c.node_forward,
                                  {expert_rows, static_cast<size_t>(c.expert_rows * D)},
                                  {c.ys2, static_cast<size_t>(T * D)}, D);
}

parallel::Work MoeBlock::DispatchWithinNode(Context& c) {
  c.rows_in = RowsToExpertsWithinNode(c, c.xe, dispatch_format_);
  return c.rows_in;
}

parallel::Work MoeBlock::CombineWithinNode(Context& c) {
  c.rows_out = RowsFromExpertsWithinNode(c, c.ye, combine_format_);
  return c.rows_out;
}

parallel::Work MoeBlock::ReduceWithinNode(Context& c) {
  const int64_t D = dim_, K = shape_.top_k, R = c.node_plan.total_across_recv(),
                T = c.node_forward.total_send_rows();
  kernels::BackendOps<float>& ops = table_.ops();
  c.rows_out.wait();
  if (combine_format_ != parallel::RowFormat::kFp32) {  // each expert output, rounded on the wire
    DecodeRows(c, combine_format_, c.y_recv, T, c.ys2);
  }
  // partial[row] = sum of the row's slots on this node of gate * output (row T: zeros).
  ops.fill(c.ys2 + T * D, 0.0f, D);
  ops.moe_unpermute_combine(c.yr1, c.ys2, c.gates2, c.pos_of_entry, R, K, D,
                            /*accumulate=*/false);
  return {};
}

parallel::Work MoeBlock::CombineBackwardWithinNode(Context& c) {
  const int64_t D = dim_, K = shape_.top_k, R = c.node_plan.total_across_recv();
  c.rows_in.wait();
  // Per expert row gate * dy (into xs2), per slot <dy, output> (the forward's outputs in ys2).
  table_.ops().moe_unpermute_combine_backward(c.xs2, c.dgates2, c.xr1, c.ys2, c.gates2,
                                              c.pos_of_entry, R, K, D);
  c.dgates_rows.resize(R * K);
  table_.backend().copy_to_host(c.dgates_rows.data(), c.dgates2, sizeof(float) * R * K);
  return {};
}

parallel::Work MoeBlock::DispatchGradsWithinNode(Context& c) {
  c.rows_in = RowsToExpertsWithinNode(c, c.dye, dispatch_grads_format_);  // per-expert rows
  return c.rows_in;
}

parallel::Work MoeBlock::ReturnGateGrads(Context& c) {
  const int64_t K = shape_.top_k;
  c.dgates_back.resize(c.node_plan.total_across_send() * K);
  c.gates_back = parallel::return_gate_grads(*ep_host_comm_, c.node_plan, c.dgates_rows,
                                             c.dgates_back);
  CountCrossNode(c, static_cast<int64_t>(sizeof(float)) * K *
                        parallel::off_node(c.node_plan.across_recv_rows, ep_rank_,
                                           ep_ranks_per_node_));
  return c.gates_back;
}

parallel::Work MoeBlock::CombineGradsWithinNode(Context& c) {
  c.rows_out = RowsFromExpertsWithinNode(c, c.dxe, combine_grads_format_);  // per-expert rows
  return c.rows_out;
}

parallel::Work MoeBlock::ReduceGradsWithinNode(Context& c) {
  const int64_t D = dim_, K = shape_.top_k, R = c.node_plan.total_across_recv(),
                T = c.node_forward.total_send_rows();
  kernels::BackendOps<float>& ops = table_.ops();
  c.rows_out.wait();
  if (combine_grads_format_ != parallel::RowFormat::kFp32) {  // each expert row's gradient
    DecodeRows(c, combine_grads_format_, c.y_recv, T, c.ys2);
  }
  // The input gradient of a row: the plain sum over its slots on this node (gates were applied
  // to dy). Row T: zeros.
  ops.fill(c.ys2 + T * D, 0.0f, D);
  ops.moe_permute_backward(c.yr1, c.ys2, c.pos_of_entry, R, K, D, /*accumulate=*/false);
  return {};
}

}  // namespace tessera::trainer
