// Backward of the channels-last directional selective scan (training on the CPU).
//
// The forward is directional_scan_infer_cpu (directional_scan_infer.h): same params struct, same
// row sets, same math. This is its gradient, written for the same layouts: SIMD lanes are
// channels, the N states are N independent vector recurrences (no horizontal sum per step), and
// nothing is saved by the forward -- the kernel re-runs the forward recurrence of its channels
// (storing h_t and exp(delta_t A) for every step) and then runs the adjoint backwards in time.
//
// Gradients, per batch b, direction k, channel c (global d = k * dim + c), step t:
//   du, ddelta, dz: rows (b, k, s) like the forward's u / delta / z rows (`by_token` says whether
//     s is the token index[k, t] or the step t); every direction writes its own rows, so a u or z
//     shared by the directions (direction stride 0 in the forward) needs per-direction gradient
//     rows that the caller sums. Padding steps of by-token rows (index -1) are never written.
//     ddelta is the gradient of the pre-activation delta (before the bias and softplus): with
//     dt_rank > 0, of sum_r dt_weight[d, r] dt[b, k, s, r]. Its products with dt_weight and dt
//     come out directly when asked for (so the (B, K, S, dim) ddelta need not exist):
//   ddt: rows (b, k, s) of dt_rank values, sum_c ddelta[c] dt_weight[d, r] (like dB / dC);
//   ddt_weight (K * dim, dt_rank): sum over batch and steps of ddelta dt[b, k, s, r].
//   dB, dC: rows (b, k, s) of dstate values, summed over the channels.
//   dA (K * dim, N), dD (K * dim), ddelta_bias (K * dim): summed over batch and steps.
// Weights (reduce / search weights) are not supported here (params.weights must be null).
//
// Work units are (batch, direction, segment of channels); a segment is a run of whole
// kDirectionalScanInferBlock channel blocks, and the number of segments depends only on the
// shapes (enough units for 16+ cores at batch 8). dB / dC are summed over a unit's channels in
// vector accumulators and over the lanes by a fixed tree, then over the segments in a fixed order;
// dA / dD / ddelta_bias per (batch, channel), then over the batch in a fixed order: results are
// bit-identical for any thread count. Everything the kernel writes besides the gradients lives in
// the caller's workspace (no allocation inside): the partial sums and one scratch slot per thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "localmamba/directional_scan_infer.h"

namespace localmamba {

// A writable row set: row (b, k, s) of `inner` contiguous values at
// ptr + b * stride_batch + k * stride_direction + s * stride_step.
struct ChannelsLastGradRows {
  void* ptr = nullptr;
  int64_t stride_batch = 0, stride_direction = 0, stride_step = 0;
  bool by_token = true;
};

struct DirectionalScanTrainGrads {
  ChannelsLastRows dout;                     // (B, K, num_tokens, dim) by token: the output's gradient
  // du, dB, dC required; dz when params.z is given; ddelta required when dt_rank == 0, else each of
  // ddelta, ddt and ddt_weight is optional (computed when given)
  ChannelsLastGradRows du, ddelta, dB, dC, dz, ddt;
  void* dA = nullptr;                        // (K * dim, dstate)
  int64_t dA_stride_dim = 0, dA_stride_state = 0;
  void* dD = nullptr;  // optional (K * dim,)
  int64_t dD_stride = 0;
  void* ddelta_bias = nullptr;  // optional (K * dim,)
  int64_t ddelta_bias_stride = 0;
  void* ddt_weight = nullptr;  // optional (K * dim, dt_rank), dt_rank > 0 only
  int64_t ddt_weight_stride_dim = 0, ddt_weight_stride_rank = 0;
  void* workspace = nullptr;  // >= one slot (directional_scan_train_layout), 64-byte aligned
  int64_t workspace_bytes = 0;
};

// Units aim at this many (batch * K * segments); more segments only where batch * K is smaller.
constexpr int64_t kDirectionalScanTrainTargetUnits = 64;
// States per register block of the backward (the forward states of one block are stored per step).
constexpr int64_t kDirectionalScanTrainStateBlock = 4;
// Widest SIMD vector any build may pick at run time: scratch slots are sized for it.
constexpr int64_t kDirectionalScanTrainMaxVectorBytes = 64;

// Where the parts of the workspace lie (byte offsets, each 64-byte aligned): the dB / dC / ddt
// partial sums over channel segments (absent with one segment), the per-(batch, channel)
// dA / dD / dbias / ddt_weight sums, then scratch slots of slot_bytes, one per thread that runs.
struct DirectionalScanTrainLayout {
  int64_t segments = 1;
  int64_t small_offset = 0, slot_offset = 0, slot_bytes = 0;
  // Slots that a workspace of `bytes` holds.
  int64_t slots_in(int64_t bytes) const { return bytes > slot_offset ? (bytes - slot_offset) / slot_bytes : 0; }
};
DirectionalScanTrainLayout directional_scan_train_layout(const DirectionalScanInferParams& params);

// Channel segments per (batch, direction): a function of the shapes only.
int64_t directional_scan_train_segments(const DirectionalScanInferParams& params);
// Work units of the backward: batch * K * segments.
int64_t directional_scan_train_units(const DirectionalScanInferParams& params);
// Bytes of the workspace the backward needs: the partial sums and a scratch slot for each of
// min(get_num_threads(), units) threads (queried now; a smaller workspace of at least one slot
// runs on fewer threads, with the same results).
int64_t directional_scan_train_workspace_bytes(const DirectionalScanInferParams& params);

// Validates the forward params (check_directional_scan_infer_params; params.out is not used and
// may be null) and the gradient fields.
void check_directional_scan_train_grads(const DirectionalScanInferParams& params, const DirectionalScanTrainGrads& grads);

void directional_scan_train_bwd_cpu(const DirectionalScanInferParams& params, const DirectionalScanTrainGrads& grads);

}  // namespace localmamba
