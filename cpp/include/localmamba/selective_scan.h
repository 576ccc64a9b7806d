// Selective scan (Mamba's S6, SPEC section 1.2): forward and backward, CPU and CUDA.
//
// Per batch b, channel d (group g = d / (dim / n_groups)), state n, time t:
//   delta_t = delta[b,d,t] + delta_bias[d];  if delta_softplus: delta_t = softplus(delta_t)
//   h_t[n]  = exp(delta_t * A[d,n]) * h_{t-1}[n] + delta_t * B[b,g,n,t] * u[b,d,t]   (h_{-1} = h0)
//   y[b,d,t] = sum_n C[b,g,n,t] * h_t[n] + D[d] * u[b,d,t];  if z: y *= silu(z[b,d,t])
//
// Element types. u, delta, z, out (and du, ddelta, dz, dout) share `dtype`; B and C (and dB,
// dC) share `bc_dtype`, which is `dtype` or float32. Everything else -- A, D, delta_bias, the
// initial / last / chunk states and their gradients -- is the "state type": float32, or
// float64 when dtype is float64. States and accumulations are always in the state type.
//
// Layout. Every (B, D, L) / (B, G, N, L) tensor must have stride 1 along L; the batch,
// channel, group and state strides are free (any int64, in elements). B and C without groups
// are (B, N, L): pass n_groups = 1 and stride_group = 0.
//
// Saved state. The forward writes the state at the *start* of every chunk of `chunk_size`
// time steps to `chunk_states` (contiguous (batch, dim, num_chunks, dstate), state type);
// the backward recomputes the states inside each chunk from it, so the memory kept for the
// backward is O(B*D*N*L/chunk_size). Results never depend on the thread count.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

namespace localmamba {

constexpr int64_t kSelectiveScanMaxDstate = 256;

struct SelectiveScanParams {
  DType dtype = DType::kFloat32;     // u, delta, z, out
  DType bc_dtype = DType::kFloat32;  // B, C: dtype or float32

  int64_t batch = 0, dim = 0, length = 0, dstate = 0, n_groups = 1;
  int64_t chunk_size = 64;  // CPU: any >= 1; CUDA: must be selective_scan_cuda_chunk_size()
  bool delta_softplus = false;

  const void* u = nullptr;
  int64_t u_stride_batch = 0, u_stride_dim = 0;
  const void* delta = nullptr;
  int64_t delta_stride_batch = 0, delta_stride_dim = 0;
  const void* A = nullptr;  // (dim, dstate), state type
  int64_t A_stride_dim = 0, A_stride_state = 0;
  const void* B = nullptr;  // (batch, n_groups, dstate, length)
  int64_t B_stride_batch = 0, B_stride_group = 0, B_stride_state = 0;
  const void* C = nullptr;
  int64_t C_stride_batch = 0, C_stride_group = 0, C_stride_state = 0;
  const void* D = nullptr;  // optional (dim,), state type
  int64_t D_stride = 0;
  const void* z = nullptr;  // optional (batch, dim, length)
  int64_t z_stride_batch = 0, z_stride_dim = 0;
  const void* delta_bias = nullptr;  // optional (dim,), state type
  int64_t delta_bias_stride = 0;
  const void* initial_state = nullptr;  // optional (batch, dim, dstate), state type
  int64_t initial_state_stride_batch = 0, initial_state_stride_dim = 0, initial_state_stride_state = 0;

  // Forward outputs.
  void* out = nullptr;  // (batch, dim, length), dtype
  int64_t out_stride_batch = 0, out_stride_dim = 0;
  void* last_state = nullptr;  // optional (batch, dim, dstate), state type
  int64_t last_state_stride_batch = 0, last_state_stride_dim = 0, last_state_stride_state = 0;
  void* chunk_states = nullptr;  // optional on forward (needed by backward), contiguous

  // Scratch memory of the CUDA backward (the CPU kernels ignore it): at least
  // selective_scan_bwd_workspace_bytes(*this) bytes, aligned to 8, contents irrelevant. The caller
  // allocates it (PyTorch: a tensor, so its caching allocator sees it); the kernels never allocate.
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;

  void* cuda_stream = nullptr;  // cudaStream_t for the CUDA implementation; nullptr = default stream
};

// Backward: reads the forward inputs and chunk_states from `fwd` (its outputs are unused),
// the output gradient dout, and optionally the gradient of the last state. Every gradient
// pointer may be null to skip that output (the work is the same). dA, dD, ddelta_bias are
// written (not accumulated); dB/dC have the shape and strides of B/C.
struct SelectiveScanGrads {
  const void* dout = nullptr;  // (batch, dim, length), dtype
  int64_t dout_stride_batch = 0, dout_stride_dim = 0;
  const void* dlast_state = nullptr;  // optional (batch, dim, dstate), state type
  int64_t dlast_state_stride_batch = 0, dlast_state_stride_dim = 0, dlast_state_stride_state = 0;

  void* du = nullptr;
  int64_t du_stride_batch = 0, du_stride_dim = 0;
  void* ddelta = nullptr;
  int64_t ddelta_stride_batch = 0, ddelta_stride_dim = 0;
  void* dz = nullptr;
  int64_t dz_stride_batch = 0, dz_stride_dim = 0;
  void* dA = nullptr;  // (dim, dstate), state type
  int64_t dA_stride_dim = 0, dA_stride_state = 0;
  void* dB = nullptr;  // bc_dtype
  int64_t dB_stride_batch = 0, dB_stride_group = 0, dB_stride_state = 0;
  void* dC = nullptr;
  int64_t dC_stride_batch = 0, dC_stride_group = 0, dC_stride_state = 0;
  void* dD = nullptr;  // (dim,), state type
  int64_t dD_stride = 0;
  void* ddelta_bias = nullptr;
  int64_t ddelta_bias_stride = 0;
  void* dinitial_state = nullptr;  // (batch, dim, dstate), state type
  int64_t dinitial_state_stride_batch = 0, dinitial_state_stride_dim = 0, dinitial_state_stride_state = 0;
};

// float32, or float64 when dtype is float64.
inline DType selective_scan_state_dtype(DType dtype) {
  return dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

inline int64_t selective_scan_num_chunks(int64_t length, int64_t chunk_size) {
  return chunk_size > 0 ? (length + chunk_size - 1) / chunk_size : 0;
}

// Elements of chunk_states: batch * dim * num_chunks * dstate.
inline int64_t selective_scan_chunk_states_numel(const SelectiveScanParams& p) {
  return p.batch * p.dim * selective_scan_num_chunks(p.length, p.chunk_size) * p.dstate;
}

// Bytes of `workspace` the CUDA backward needs: state-type dB and dC accumulators
// (batch, n_groups, dstate, length) and per-(batch, channel) partials of dA (dstate), dD, ddelta_bias.
inline int64_t selective_scan_bwd_workspace_bytes(const SelectiveScanParams& p) {
  const int64_t bc = p.batch * p.n_groups * p.dstate * p.length;
  const int64_t partials = p.batch * p.dim * (p.dstate + 2);
  return (2 * bc + partials) * element_size(selective_scan_state_dtype(p.dtype));
}

// The checks the selective and the directional scan share (element types, sizes, chunk size);
// throws std::invalid_argument("<op>: ...").
void check_scan_element_types_and_sizes(const char* op, DType dtype, DType bc_dtype, int64_t batch, int64_t dim,
                                        int64_t length, int64_t dstate, int64_t chunk_size);

// Validates sizes, dtypes, required pointers (throws std::invalid_argument naming the
// argument). Shared by the CPU and CUDA paths; `backward` also checks chunk_states.
void check_selective_scan_params(const SelectiveScanParams& params, bool backward);

// Host implementations (multi-threaded over batch x channel blocks, SIMD over the state).
void selective_scan_fwd_cpu(const SelectiveScanParams& params);
void selective_scan_bwd_cpu(const SelectiveScanParams& params, const SelectiveScanGrads& grads);

// SIMD level picked at run time by the CPU kernels ("avx512f", "avx2+fma" or "baseline");
// the environment variable LOCALMAMBA_CPU_ISA=avx2|baseline caps it.
const char* selective_scan_cpu_isa();

namespace cuda {
// Defined in the CUDA library (cuda/selective_scan.cu) when it is built; same contracts,
// every pointer in device memory.
int64_t selective_scan_cuda_chunk_size();
void selective_scan_fwd(const SelectiveScanParams& params);
void selective_scan_bwd(const SelectiveScanParams& params, const SelectiveScanGrads& grads);
}  // namespace cuda

}  // namespace localmamba
