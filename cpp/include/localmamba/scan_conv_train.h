// Backward of scan_conv_infer (mixer_infer.h): LocalVim's causal depthwise conv1d (+ bias, SiLU)
// along each direction's scan, read through the index, for training on the CPU. The forward is
// scan_conv_infer_cpu itself (same params struct; params.out is not used here and may be null);
// nothing is saved by it: the backward recomputes pre = bias + conv per step, with the forward's
// multiply-adds in the forward's order.
//
// With xs[b,k,s,c] = x[b, index[k,s], c] (0 for s < 0 or a padding step), g = d out:
//   dpre[b,k,t,c]  = g[b,k,t,c] * silu'(pre[b,k,t,c])          (= g without silu)
//   dx[b,tok,c]    = sum_k sum_j w[k,j,c] dpre[b,k,s+taps-1-j,c]  where s = the step of direction k
//                    that reads tok (each direction reads each token at most once), steps >= length
//                    skipped; tokens no direction reads get 0
//   dweight[k,j,c] = sum_b sum_t dpre[b,k,t,c] xs[b,k,t-taps+1+j,c]
//   dbias[k,c]     = sum_b sum_t dpre[b,k,t,c]
//
// Three passes, each split into work units by the shapes only:
//  1. units (batch, direction, block of kScanConvInferSteps steps): dpre (into the workspace) and the
//     unit's partial dweight / dbias (taps + 1 rows of dim, into the workspace);
//  2. units (batch, block of kScanConvTrainTokens tokens): dx, summing directions in order, taps in
//     order;
//  3. units (direction, row of the partials): the partials summed over batch, then step blocks.
// Every output is written by one unit with a fixed order of additions: results are bit-identical
// for any thread count. No allocation: the index inverse, dpre and the partials live in the
// caller's workspace.
#pragma once

#include <cstdint>

#include "localmamba/mixer_infer.h"

namespace localmamba {

// Tokens per work unit of the dx pass.
constexpr int64_t kScanConvTrainTokens = 32;

struct ScanConvTrainGrads {
  const void* dout = nullptr;  // (batch, K, length, dim), channels contiguous: the output's gradient
  int64_t dout_stride_batch = 0, dout_stride_direction = 0, dout_stride_step = 0;
  void* dx = nullptr;  // (batch, num_tokens, dim), channels contiguous; every row written
  int64_t dx_stride_batch = 0, dx_stride_token = 0;
  void* dweight = nullptr;  // (K, taps, dim), channels contiguous
  int64_t dweight_stride_direction = 0, dweight_stride_tap = 0;
  void* dbias = nullptr;  // optional (K, dim), channels contiguous; needs params.bias
  int64_t dbias_stride_direction = 0;
  void* workspace = nullptr;  // scan_conv_train_workspace(params).bytes bytes, 64-byte aligned
  int64_t workspace_bytes = 0;
};

// Where the backward keeps its scratch, as byte offsets into the workspace (each 64-byte aligned):
// the step of each (direction, token) (int64, K * num_tokens), dpre (batch * K * length * dim
// elements; none without silu: dout is read instead), the partial sums (pass-1 units * (taps + 1) * dim
// elements).
struct ScanConvTrainWorkspace {
  int64_t inverse_offset = 0, dpre_offset = 0, partial_offset = 0, bytes = 0;
};
ScanConvTrainWorkspace scan_conv_train_workspace(const ScanConvInferParams& params);

// Work units of the passes (shapes only): pass 1 is scan_conv_infer_units(params).
int64_t scan_conv_train_dx_units(const ScanConvInferParams& params);
int64_t scan_conv_train_reduce_units(const ScanConvInferParams& params);

// Validates the forward params (check_scan_conv_infer_params) and the gradient fields; throws
// std::invalid_argument naming the field.
void check_scan_conv_train_grads(const ScanConvInferParams& params, const ScanConvTrainGrads& grads);

// Writes dx, dweight and dbias (if given; with batch 0 dweight and dbias are zeros). Throws std::invalid_argument (before writing any output)
// when a direction reads a token twice.
void scan_conv_train_bwd_cpu(const ScanConvInferParams& params, const ScanConvTrainGrads& grads);

}  // namespace localmamba
