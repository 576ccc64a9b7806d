// Backward of scan_conv_infer (mixer_infer.h): LocalVim's causal depthwise conv1d (+ bias, SiLU)
// along each direction's scan, read through the index, for training on the CPU. The forward is
// scan_conv_infer_cpu itself (same params struct; params.out is not used here and may be null);
// nothing is saved by it: the backward recomputes pre = bias + conv per step, with the forward's
// multiply-adds in the forward's order.
//
// With xs[b,k,s,c] = x[b, index[k,s], c] (0 for s < 0 or a padding step), g = d out:
//   dpre[b,k,t,c]  = g[b,k,t,c] * silu'(pre[b,k,t,c])          (= g without silu)
//   dx[b,tok,c]    = sum over (k, s) with index[k,s] = tok of sum_j w[k,j,c] dpre[b,k,s+taps-1-j,c]
//                    (steps >= length skipped); tokens no step reads get 0
//   dweight[k,j,c] = sum_b sum_t dpre[b,k,t,c] xs[b,k,t-taps+1+j,c]
//   dbias[k,c]     = sum_b sum_t dpre[b,k,t,c]
//
// Two passes, split into work units by the shapes only:
//  1. units (batch, segment of channels): for each direction in order, for each step in order,
//     dpre from the forward's pre, added into the dx rows of the token it reads (dx of the unit's
//     channels stays in cache: no per-direction copy goes to memory), and the (batch, direction)
//     partial dweight / dbias of those channels (into the workspace);
//  2. units (direction, row of the partials): the partials summed over the batch in order.
// Every output is written by one unit with a fixed order of additions (dx: directions in order,
// then steps in order): results are bit-identical for any thread count. Channels never mix, so the
// segment boundaries do not change any value either. No allocation: the partials live in the
// caller's workspace.
#pragma once

#include <cstdint>

#include "localmamba/mixer_infer.h"

namespace localmamba {

// Pass-1 units aim at this many (batch * segments); more segments only where the batch is smaller.
constexpr int64_t kScanConvTrainTargetUnits = 64;
// Channels of a segment are a multiple of this (one AVX-512 float vector).
constexpr int64_t kScanConvTrainBlock = 16;

struct ScanConvTrainGrads {
  const void* dout = nullptr;  // (batch, K, length, dim), channels contiguous: the output's gradient
  int64_t dout_stride_batch = 0, dout_stride_direction = 0, dout_stride_step = 0;
  void* dx = nullptr;  // (batch, num_tokens, dx_channels), channels contiguous; every row written
  int64_t dx_stride_batch = 0, dx_stride_token = 0;
  // Channels of a dx row (0: dim); those past dim get zeros, so dx can be the gradient of a wider
  // row set whose first dim channels are x (e.g. in_proj's (B, T, 2 dim) output, x its first half).
  int64_t dx_channels = 0;
  void* dweight = nullptr;  // (K, taps, dim), channels contiguous
  int64_t dweight_stride_direction = 0, dweight_stride_tap = 0;
  void* dbias = nullptr;  // optional (K, dim), channels contiguous; needs params.bias
  int64_t dbias_stride_direction = 0;
  void* workspace = nullptr;  // scan_conv_train_workspace_bytes(params) bytes, 64-byte aligned
  int64_t workspace_bytes = 0;
};

// Channels per segment of pass 1 (a multiple of kScanConvTrainBlock; the last segment may be
// shorter) and the number of segments: functions of the shapes only.
int64_t scan_conv_train_segment_channels(const ScanConvInferParams& params);
int64_t scan_conv_train_segments(const ScanConvInferParams& params);
// Work units of the passes: batch * segments, and K * (taps + 1).
int64_t scan_conv_train_units(const ScanConvInferParams& params);
int64_t scan_conv_train_reduce_units(const ScanConvInferParams& params);
// Bytes of the workspace: the partial sums, (batch, K, taps + 1, dim) elements.
int64_t scan_conv_train_workspace_bytes(const ScanConvInferParams& params);

// Validates the forward params (check_scan_conv_infer_params) and the gradient fields; throws
// std::invalid_argument naming the field.
void check_scan_conv_train_grads(const ScanConvInferParams& params, const ScanConvTrainGrads& grads);

// Writes dx, dweight and dbias (if given; with batch 0 dweight and dbias are zeros).
void scan_conv_train_bwd_cpu(const ScanConvInferParams& params, const ScanConvTrainGrads& grads);

}  // namespace localmamba
