// Backward of SCAttn's gated sum over the directions (both mixers, CPU training). The forward is
// gate_stats_infer + the gate MLP + gated_merge_infer (mixer_infer.h):
//   m[b,k,c]   = mean_t xhat[b,k,t,c],  xhat = (y - mu) * rstd per row y[b,k,t,:]
//   s[b,k,:]   = gate(m[b,k,:] * ln_w + ln_b)                   (the MLP runs in the framework)
//   out[b,t,c] = sum_k s[b,k,c] y[b,k,t,c]
// Its backward is two passes over y around the MLP's backward (which runs in the framework):
//  * gate_grad: ds[b,k,c] = sum_t dout[b,t,c] y[b,k,t,c];
//  * gated_sum_bwd_y: with e[b,k,c] = dL/dm[b,k,c] / T (the gradient of every token's xhat) and the
//    row's mu, rstd recomputed as gate_stats_infer computes them,
//      dy[b,k,t,c] = dout[b,t,c] s[b,k,c] + rstd (e_c - mean_c e) - rstd^3 / C * P_t (y_c - mu),
//      P_t = sum_c e_c (y[b,k,t,c] - mu)   (LayerNorm's backward for a gradient constant over t).
// Units depend on the shapes only and every sum has a fixed order: results are bit-identical for
// any thread count. No allocation: gate_grad's partial sums live in the caller's workspace.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

namespace localmamba {

// Tokens per work unit of both passes.
constexpr int64_t kGatedSumTrainTokens = 32;

struct GatedSumTrainParams {
  DType dtype = DType::kFloat32;
  int64_t batch = 0;
  int64_t num_directions = 0;  // K
  int64_t dim = 0;             // C
  int64_t num_tokens = 0;      // T
  double eps = 1e-5;           // the forward's LayerNorm eps (gated_sum_bwd_y)

  const void* y = nullptr;  // (batch, K, T, C), channels contiguous
  int64_t y_stride_batch = 0, y_stride_direction = 0, y_stride_token = 0;
  const void* dout = nullptr;  // (batch, T, C), channels contiguous
  int64_t dout_stride_batch = 0, dout_stride_token = 0;
  const void* gate = nullptr;  // s (batch, K, C), channels contiguous (gated_sum_bwd_y)
  int64_t gate_stride_batch = 0, gate_stride_direction = 0;
  const void* token_grad = nullptr;  // e (batch, K, C), channels contiguous (gated_sum_bwd_y)
  int64_t token_grad_stride_batch = 0, token_grad_stride_direction = 0;

  void* workspace = nullptr;  // gate_grad: gated_sum_train_workspace_elements(params) elements of dtype
  int64_t workspace_elements = 0;
  void* out = nullptr;  // gate_grad: ds (batch, K, C); gated_sum_bwd_y: dy (batch, K, T, C); channels contiguous
  int64_t out_stride_batch = 0, out_stride_direction = 0, out_stride_token = 0;
};

// Work units of either pass (batch x direction x token block; shapes only).
int64_t gated_sum_train_units(const GatedSumTrainParams& params);
// Scratch of gate_grad: one partial sum per (unit, channel).
int64_t gated_sum_train_workspace_elements(const GatedSumTrainParams& params);

// Validate sizes, dtype and pointers; throw std::invalid_argument naming the field. The entry
// points validate first, before any write.
void check_gate_grad_params(const GatedSumTrainParams& params);
void check_gated_sum_bwd_y_params(const GatedSumTrainParams& params);

void gate_grad_cpu(const GatedSumTrainParams& params);
void gated_sum_bwd_y_cpu(const GatedSumTrainParams& params);

}  // namespace localmamba
