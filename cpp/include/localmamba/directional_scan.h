// Directional selective scan: the K scan directions of a LocalMamba layer (SPEC 1.1-1.3) in
// one call, reading its inputs through each direction's index map and writing its output
// straight back to token (spatial) order -- no reordered copies of any activation.
//
// The K directions are the K groups of a grouped selective scan (SPEC 1.2) over K * dim
// channels, channel k * dim + c (direction-major, as LocalVMamba's A_logs / Ds /
// dt_projs_bias). Direction k visits the sequence index[k, 0 .. length) of token indices
// (length = the longest direction's length, -1 = padding step). For batch b, direction k,
// channel c (global channel d = k * dim + c), step t, token p = index[k, t]:
//
//   token-order inputs (sequence_inputs = false; LocalVMamba): u, delta / dt, B, C, z are
//     (..., num_tokens) rows read at p; a padding step reads u = 0, delta (or dt) = 0,
//     B = C = 0, z = 0 -- exactly what the release's zero-padded gather feeds its scan, so the
//     state decays through the padding with exp(softplus(delta_bias) A).
//   sequence-order inputs (sequence_inputs = true; LocalVim, whose causal conv1d needs the
//     gathered sequence): the same rows have `length` steps and are read at t as they are.
//
//   delta_t = delta[b,k,c,t|p]                       (delta given), or
//           = sum_r dt_weight[d, r] * dt[b,k,r,t|p]  (dt_rank > 0: LocalVMamba's dt_projs,
//                                                     computed in the kernel)
//   the scan of SPEC 1.2 with A[d], D[d], delta_bias[d], B/C of group k, then
//   y_t *= weights[k] (if given) and, if p >= 0, out[b, k, c, p] = y_t (reduce_sum:
//   out[b, c, p] += y_t, summed over k in direction order in the state type). Padding steps
//   are never stored.
//
// Element types as the selective scan: u, delta, dt, z, out (and their gradients) in
// `dtype`; B, C in `bc_dtype` (dtype or float32); A, D, delta_bias, dt_weight, weights and
// the saved chunk states in the state type (float32, float64 for float64).
//
// Layout: every per-token row has stride 1 along its last axis, except `out` / `dout`, whose
// token stride is free (so a (B, K, tokens, dim) "channels-last" output is written directly).
// A zero direction stride on u shares one u (B, dim, tokens) among all directions; its
// gradient du is then the sum over directions (accumulated in the state type, fixed order).
//
// Results are deterministic and independent of the thread count (CPU). The backward keeps
// only chunk-boundary states (as the selective scan): saved memory O(B*K*dim*N*length/chunk).
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

namespace localmamba {

struct DirectionalScanParams {
  DType dtype = DType::kFloat32;
  DType bc_dtype = DType::kFloat32;

  int64_t batch = 0;
  int64_t num_directions = 0;  // K = groups
  int64_t dim = 0;             // channels per direction
  int64_t length = 0;          // sequence steps (longest direction, padding included)
  int64_t num_tokens = 0;      // tokens of the output (and of token-order inputs)
  int64_t dstate = 0;
  int64_t dt_rank = 0;  // > 0: delta computed in the kernel from dt and dt_weight
  int64_t chunk_size = 64;
  bool delta_softplus = false;
  bool sequence_inputs = false;
  bool reduce_sum = false;

  const int64_t* index = nullptr;  // (num_directions, length) contiguous; host (CPU) / device (CUDA) memory

  const void* u = nullptr;  // (batch, K or shared, dim, T)
  int64_t u_stride_batch = 0, u_stride_direction = 0, u_stride_dim = 0;
  const void* delta = nullptr;  // (batch, K, dim, T); null when dt_rank > 0
  int64_t delta_stride_batch = 0, delta_stride_direction = 0, delta_stride_dim = 0;
  const void* dt = nullptr;  // (batch, K, dt_rank, T), dtype
  int64_t dt_stride_batch = 0, dt_stride_direction = 0, dt_stride_rank = 0;
  const void* dt_weight = nullptr;  // (K * dim, dt_rank), state type
  int64_t dt_weight_stride_dim = 0, dt_weight_stride_rank = 0;
  const void* A = nullptr;  // (K * dim, dstate), state type
  int64_t A_stride_dim = 0, A_stride_state = 0;
  const void* B = nullptr;  // (batch, K, dstate, T), bc_dtype
  int64_t B_stride_batch = 0, B_stride_direction = 0, B_stride_state = 0;
  const void* C = nullptr;
  int64_t C_stride_batch = 0, C_stride_direction = 0, C_stride_state = 0;
  const void* D = nullptr;  // optional (K * dim,), state type
  int64_t D_stride = 0;
  const void* z = nullptr;  // optional (batch, K, dim, T)
  int64_t z_stride_batch = 0, z_stride_direction = 0, z_stride_dim = 0;
  const void* delta_bias = nullptr;  // optional (K * dim,), state type
  int64_t delta_bias_stride = 0;
  const void* weights = nullptr;  // optional (K,), state type
  int64_t weights_stride = 0;

  void* out = nullptr;  // (batch, K, dim, num_tokens), or (batch, dim, num_tokens) with reduce_sum
  int64_t out_stride_batch = 0, out_stride_direction = 0, out_stride_dim = 0, out_stride_token = 0;
  void* chunk_states = nullptr;  // (batch, K * dim, num_chunks, dstate) contiguous, state type

  // Scratch memory of the CUDA kernels (the CPU kernels ignore it): at least
  // directional_scan_{fwd,bwd}_workspace_bytes(*this) bytes, aligned to 8, contents irrelevant.
  // The caller allocates it (PyTorch: a tensor, so its caching allocator sees it).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;

  void* cuda_stream = nullptr;
};

// Gradients: every pointer may be null to skip it. du / ddelta / ddt / dz / dB / dC have the
// shapes of their inputs (du shared like u when u's direction stride is 0); dA, dD,
// ddelta_bias, ddt_weight, dweights are written (not accumulated).
struct DirectionalScanGrads {
  const void* dout = nullptr;  // like out
  int64_t dout_stride_batch = 0, dout_stride_direction = 0, dout_stride_dim = 0, dout_stride_token = 0;

  void* du = nullptr;
  int64_t du_stride_batch = 0, du_stride_direction = 0, du_stride_dim = 0;
  void* ddelta = nullptr;
  int64_t ddelta_stride_batch = 0, ddelta_stride_direction = 0, ddelta_stride_dim = 0;
  void* ddt = nullptr;
  int64_t ddt_stride_batch = 0, ddt_stride_direction = 0, ddt_stride_rank = 0;
  void* ddt_weight = nullptr;
  int64_t ddt_weight_stride_dim = 0, ddt_weight_stride_rank = 0;
  void* dz = nullptr;
  int64_t dz_stride_batch = 0, dz_stride_direction = 0, dz_stride_dim = 0;
  void* dA = nullptr;
  int64_t dA_stride_dim = 0, dA_stride_state = 0;
  void* dB = nullptr;
  int64_t dB_stride_batch = 0, dB_stride_direction = 0, dB_stride_state = 0;
  void* dC = nullptr;
  int64_t dC_stride_batch = 0, dC_stride_direction = 0, dC_stride_state = 0;
  void* dD = nullptr;
  int64_t dD_stride = 0;
  void* ddelta_bias = nullptr;
  int64_t ddelta_bias_stride = 0;
  void* dweights = nullptr;
  int64_t dweights_stride = 0;
};

constexpr int64_t kDirectionalScanMaxDtRank = 256;

inline int64_t directional_scan_num_chunks(const DirectionalScanParams& p) {
  return p.chunk_size > 0 ? (p.length + p.chunk_size - 1) / p.chunk_size : 0;
}
inline int64_t directional_scan_chunk_states_numel(const DirectionalScanParams& p) {
  return p.batch * p.num_directions * p.dim * directional_scan_num_chunks(p) * p.dstate;
}
// Tokens per row of the inputs: num_tokens (token order) or length (sequence order).
inline int64_t directional_scan_input_length(const DirectionalScanParams& p) {
  return p.sequence_inputs ? p.length : p.num_tokens;
}

// u shared by the directions (direction stride 0): du is then summed over the directions.
inline bool directional_scan_shared_u(const DirectionalScanParams& p) {
  return p.u_stride_direction == 0 && p.num_directions > 1;
}

// Bytes of `workspace` the CUDA forward needs: the state-type reduce_sum accumulator
// (batch, dim, num_tokens), nothing without reduce_sum.
inline int64_t directional_scan_fwd_workspace_bytes(const DirectionalScanParams& p) {
  const int64_t state = element_size(p.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32);
  return p.reduce_sum ? p.batch * p.dim * p.num_tokens * state : 0;
}

// Bytes of `workspace` the CUDA backward needs, all in the state type: dB and dC accumulators
// (batch, K, dstate, T), ddt (batch, K, dt_rank, T), the shared-u du accumulator (batch, dim, T)
// and per-(batch, K * dim) partials of dA (dstate), dD, ddelta_bias, dweights, ddt_weight (dt_rank).
inline int64_t directional_scan_bwd_workspace_bytes(const DirectionalScanParams& p) {
  const int64_t state = element_size(p.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32);
  const int64_t K = p.num_directions, T = directional_scan_input_length(p);
  const int64_t bc = p.batch * K * p.dstate * T;
  const int64_t ddt = p.batch * K * p.dt_rank * T;
  const int64_t du = directional_scan_shared_u(p) ? p.batch * p.dim * T : 0;
  const int64_t partials = p.batch * K * p.dim * (p.dstate + 3 + p.dt_rank);
  return (2 * bc + ddt + du + partials) * state;
}

// Validates sizes, dtypes, pointers and (CPU: host index) the index table: every entry in
// [-1, num_tokens); with token-order inputs each token at most once per direction.
// Throws std::invalid_argument naming the argument.
void check_directional_scan_params(const DirectionalScanParams& params, bool backward, bool check_index);

void directional_scan_fwd_cpu(const DirectionalScanParams& params);
void directional_scan_bwd_cpu(const DirectionalScanParams& params, const DirectionalScanGrads& grads);

namespace cuda {
void directional_scan_fwd(const DirectionalScanParams& params);
void directional_scan_bwd(const DirectionalScanParams& params, const DirectionalScanGrads& grads);
}  // namespace cuda

}  // namespace localmamba
