// Forward-only (inference) passes of the two mixers around the channels-last directional scan
// (directional_scan_infer.h): each is one memory pass over rows of `dim` contiguous channels,
// vectorised across channels, replacing a chain of framework element-wise ops.
//
//  * scan_conv_infer (LocalVim, SPEC 1.3): the causal depthwise conv1d along each direction's
//    scan, read straight through the index table (no gathered copy), plus bias and SiLU:
//      u[b,k,t,c] = silu(bias[k,c] + sum_j w[k,j,c] x[b, index[k, t - taps + 1 + j], c])
//    where a step before the sequence start or a padding step (index -1) reads zeros.
//  * gate_stats_infer (SCAttn's token mean of a LayerNorm without affine):
//      g[b,k,c] = mean_t (y[b,k,t,c] - mu[b,k,t]) * rstd[b,k,t],
//      mu / rstd: mean and 1 / sqrt(var + eps) of row y[b,k,t,:].
//  * gated_merge_infer (the sum of the gated directions, optionally SS2D's out_norm and z gate):
//      m[b,t,c] = sum_k gate[b,k,c] y[b,k,t,c];  then, if normalize, m = LayerNorm(m) (weight,
//      bias, eps over c); then, if z is given, m *= z (z_silu: m *= silu(z)).
//
// Work units depend on the shapes only (never on the thread count), and no unit reduces across
// others except in a fixed order, so results are bit-identical for any thread count.
// Elements are float32 or float64. No allocation: gate_stats_infer's scratch is the caller's.
#pragma once

#include <cstdint>

#include "localmamba/directional_scan_infer.h"
#include "localmamba/dtype.h"

namespace localmamba {

// Steps (tokens) per work unit of scan_conv_infer / gate_stats_infer / gated_merge_infer.
constexpr int64_t kScanConvInferSteps = 32;
constexpr int64_t kGateStatsInferTokens = 32;
constexpr int64_t kGatedMergeInferTokens = 16;
constexpr int64_t kScanConvMaxTaps = 16;

struct ScanConvInferParams {
  DType dtype = DType::kFloat32;
  int64_t batch = 0;
  int64_t num_directions = 0;  // K
  int64_t dim = 0;
  int64_t length = 0;      // scan steps (padding included)
  int64_t num_tokens = 0;  // rows of x per batch element
  int64_t taps = 0;        // conv kernel size, in [1, kScanConvMaxTaps]
  bool silu = true;
  const int64_t* index = nullptr;  // (K, length) contiguous, host memory; -1 = padding step

  const void* x = nullptr;  // (batch, num_tokens, dim), channels contiguous
  int64_t x_stride_batch = 0, x_stride_token = 0;
  const void* weight = nullptr;  // (K, taps, dim), channels contiguous
  int64_t weight_stride_direction = 0, weight_stride_tap = 0;
  const void* bias = nullptr;  // optional (K, dim), channels contiguous
  int64_t bias_stride_direction = 0;

  void* out = nullptr;  // (batch, K, length, dim), channels contiguous
  int64_t out_stride_batch = 0, out_stride_direction = 0, out_stride_step = 0;
};

struct GateStatsInferParams {
  DType dtype = DType::kFloat32;
  int64_t batch = 0;
  int64_t num_directions = 0;
  int64_t dim = 0;
  int64_t num_tokens = 0;
  double eps = 1e-5;

  const void* y = nullptr;  // (batch, K, num_tokens, dim), channels contiguous
  int64_t y_stride_batch = 0, y_stride_direction = 0, y_stride_token = 0;
  void* workspace = nullptr;  // gate_stats_infer_workspace_elements(params) elements of dtype
  int64_t workspace_elements = 0;
  void* out = nullptr;  // (batch, K, dim), channels contiguous
  int64_t out_stride_batch = 0, out_stride_direction = 0;
};

struct GatedMergeInferParams {
  DType dtype = DType::kFloat32;
  int64_t batch = 0;
  int64_t num_directions = 0;
  int64_t dim = 0;
  int64_t num_tokens = 0;

  const void* y = nullptr;  // (batch, K, num_tokens, dim), channels contiguous
  int64_t y_stride_batch = 0, y_stride_direction = 0, y_stride_token = 0;
  const void* gate = nullptr;  // (batch, K, dim), channels contiguous
  int64_t gate_stride_batch = 0, gate_stride_direction = 0;

  bool normalize = false;  // LayerNorm over channels after the merge
  double eps = 1e-5;
  const void* norm_weight = nullptr;  // (dim,) contiguous, needed with normalize
  const void* norm_bias = nullptr;    // (dim,) contiguous, needed with normalize

  const void* z = nullptr;  // optional (batch, num_tokens, dim), channels contiguous
  int64_t z_stride_batch = 0, z_stride_token = 0;
  bool z_silu = false;  // multiply by silu(z) instead of z

  void* out = nullptr;  // (batch, num_tokens, dim), channels contiguous
  int64_t out_stride_batch = 0, out_stride_token = 0;
};

// Work units of a call (shapes only).
int64_t scan_conv_infer_units(const ScanConvInferParams& params);
int64_t gate_stats_infer_units(const GateStatsInferParams& params);
int64_t gated_merge_infer_units(const GatedMergeInferParams& params);
// Scratch of gate_stats_infer: one partial token sum per (batch, direction, token block, channel).
int64_t gate_stats_infer_workspace_elements(const GateStatsInferParams& params);

// Validate sizes, dtype, pointers (and the index table); throw std::invalid_argument naming the
// argument. The entry points validate first.
void check_scan_conv_infer_params(const ScanConvInferParams& params);
void check_gate_stats_infer_params(const GateStatsInferParams& params);
void check_gated_merge_infer_params(const GatedMergeInferParams& params);

void scan_conv_infer_cpu(const ScanConvInferParams& params);
void gate_stats_infer_cpu(const GateStatsInferParams& params);
void gated_merge_infer_cpu(const GatedMergeInferParams& params);

}  // namespace localmamba
