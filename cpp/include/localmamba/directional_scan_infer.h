// Forward-only directional selective scan over channels-last rows (inference).
//
// The same result as directional_scan_fwd_cpu (directional_scan.h, SPEC 1.1-1.3) without the
// chunk states a backward needs, for inputs whose channel axis is contiguous: the layouts the
// mixers already have ((B, T, C) tokens after a projection), so nothing is transposed or
// gathered first. The kernel vectorises across channels (one SIMD lane per channel, the N
// states as independent recurrences): no horizontal sums, exp on whole vectors.
//
// Every input is a set of rows: row (b, k, s) of `inner` contiguous values at
//   ptr + b * stride_batch + k * stride_direction + s * stride_step,
// inner = dim (u, delta, z), dt_rank (dt) or dstate (B, C). `by_token` says what s is:
//   true:  the token index[k, t] visited at sequence step t (a padding step, index -1, reads
//          zeros -- the release's zero-padded gather);
//   false: the sequence step t itself (rows of `length` steps, read as they are).
// A direction stride of 0 shares one row set among the directions (e.g. LocalVMamba's u, or
// LocalVim's z read straight from the in_proj output through the index).
//
// Per batch b, direction k, channel c (global channel d = k * dim + c), step t, token p:
//   delta = delta[b,k,s,c] + delta_bias[d]   or   delta_bias[d] + sum_r dt_weight[d,r] dt[b,k,s,r]
//   delta = softplus(delta) if delta_softplus
//   h_n   = exp(delta A[d,n]) h_n + delta u B_n          (h = 0 at t = 0)
//   y     = (sum_n C_n h_n + D[d] u) * (z silu-gated: z sigmoid(z)) * weights[k]
//   out[b, k, p, c] = y  for p = index[k, t] >= 0 (padding steps are never stored).
// Elements are float32 or float64 (the state type; no conversion). Results are deterministic
// and independent of the thread count: work units are (batch, direction, block of channels),
// each writing its own outputs, with no reduction across units.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

namespace localmamba {

struct ChannelsLastRows {
  const void* ptr = nullptr;
  int64_t stride_batch = 0, stride_direction = 0, stride_step = 0;
  bool by_token = true;
};

struct DirectionalScanInferParams {
  DType dtype = DType::kFloat32;  // every tensor: float32 or float64

  int64_t batch = 0;
  int64_t num_directions = 0;  // K
  int64_t dim = 0;             // channels per direction
  int64_t length = 0;          // sequence steps (longest direction, padding included)
  int64_t num_tokens = 0;      // tokens of the output
  int64_t dstate = 0;
  int64_t dt_rank = 0;  // > 0: delta from dt and dt_weight
  bool delta_softplus = false;

  const int64_t* index = nullptr;  // (K, length) contiguous, host memory

  ChannelsLastRows u, delta, dt, B, C, z;  // delta xor dt; z optional
  const void* A = nullptr;                 // (K * dim, dstate)
  int64_t A_stride_dim = 0, A_stride_state = 0;
  const void* dt_weight = nullptr;  // (K * dim, dt_rank)
  int64_t dt_weight_stride_dim = 0, dt_weight_stride_rank = 0;
  const void* D = nullptr;  // optional (K * dim,)
  int64_t D_stride = 0;
  const void* delta_bias = nullptr;  // optional (K * dim,)
  int64_t delta_bias_stride = 0;
  const void* weights = nullptr;  // optional (K,)
  int64_t weights_stride = 0;

  void* out = nullptr;  // (batch, K, num_tokens, dim), channel stride 1
  int64_t out_stride_batch = 0, out_stride_direction = 0, out_stride_token = 0;
};

// Channels per work unit: one SIMD vector of the widest ISA the build may pick at run time
// (the split depends only on the shapes, never on the thread count or the ISA).
constexpr int64_t kDirectionalScanInferBlock = 16;

// Work units of a call: batch * K * ceil(dim / kDirectionalScanInferBlock).
int64_t directional_scan_infer_units(const DirectionalScanInferParams& params);

// Validates sizes, dtype, pointers and the index table (entries in [-1, num_tokens), each
// token at most once per direction). Throws std::invalid_argument naming the argument.
void check_directional_scan_infer_params(const DirectionalScanInferParams& params);

void directional_scan_infer_cpu(const DirectionalScanInferParams& params);

}  // namespace localmamba
