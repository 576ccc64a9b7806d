// CUDA selective scan, forward and backward (contract: cpp/include/localmamba/selective_scan.h).
//
// One block per (channel, batch). The block walks the sequence in chunks of kChunk =
// kThreads * kItems time steps; thread i owns kItems consecutive steps of a chunk (loaded
// with vector loads when aligned). For every state n, the chunk is one block-wide scan over
// the pair operator (a, b) o (a', b') = (a a', a' b + b') -- warp shuffles, then the warp
// totals through shared memory -- seeded with the running state carried from the previous
// chunk. The state at the start of every chunk is saved for the backward.
//
// The backward walks the chunks in reverse: it recomputes the chunk's states from the saved
// chunk state (forward scan), then runs a reverse scan for the adjoint, carried across
// chunks as q_t = exp(delta_t A) g_t. Per-(batch, channel) partial sums of dA, dD and
// ddelta_bias are reduced over the batch in a fixed order by a second kernel; dB and dC
// (shared by the channels of a group) are staged per state in shared memory in time order, so
// consecutive threads add consecutive steps (coalesced atomics), with float atomics in a float32
// (float64) workspace, then converted. All accumulation is in float32 (float64 for float64).
//
// Instantiations: forward and backward for 4 input types, plus 2 finalize kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "launch.cuh"
#include "localmamba/selective_scan.h"
#include "localmamba_cuda.h"
#include "scan_primitives.cuh"

namespace localmamba {
namespace cuda {
namespace {

using namespace scan_detail;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Loads row[t0 .. t0+kItems) (zeros past the end), vectorised when aligned and in range.
template <typename T, typename S>
__device__ __forceinline__ void load_items(const T* row, int64_t t0, int64_t length, S (&out)[kItems]) {
  const T* src = row + t0;
  if (t0 + kItems <= length && reinterpret_cast<uintptr_t>(src) % sizeof(Pack<T, kItems>) == 0) {
    const Pack<T, kItems> pack = *reinterpret_cast<const Pack<T, kItems>*>(src);
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = static_cast<S>(Io<T>::load(pack.v[i]));
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = t0 + i < length ? static_cast<S>(Io<T>::load(src[i])) : S(0);
  }
}

template <typename T, typename S>
__device__ __forceinline__ void store_items(T* row, int64_t t0, int64_t length, const S (&in)[kItems]) {
  T* dst = row + t0;
  if (t0 + kItems <= length && reinterpret_cast<uintptr_t>(dst) % sizeof(Pack<T, kItems>) == 0) {
    Pack<T, kItems> pack;
#pragma unroll
    for (int i = 0; i < kItems; ++i) pack.v[i] = Io<T>::store(in[i]);
    *reinterpret_cast<Pack<T, kItems>*>(dst) = pack;
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (t0 + i < length) dst[i] = Io<T>::store(in[i]);
  }
}

// B and C are the input type or float32 (uniform branch).
template <typename T, typename S>
__device__ __forceinline__ void load_bc(const void* base, bool bc_f32, int64_t offset, int64_t t0, int64_t length,
                                        S (&out)[kItems]) {
  if (bc_f32) {
    load_items(static_cast<const float*>(base) + offset, t0, length, out);
  } else {
    load_items(static_cast<const T*>(base) + offset, t0, length, out);
  }
}


template <typename S>
__device__ __forceinline__ void prepare_delta(const SelectiveScanParams& p, S bias, int64_t t0, S (&dl)[kItems],
                                              S (&dsp)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const S raw = dl[i] + bias;
    S v = raw, dv = S(1);
    if (p.delta_softplus && raw <= S(20)) {
      v = log1p_s(exp_s(raw));
      dv = S(1) / (S(1) + exp_s(-raw));
    }
    const bool valid = t0 + i < p.length;
    dl[i] = valid ? v : S(0);  // identity step (a = 1, b = 0) past the end
    dsp[i] = dv;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) fwd_kernel(SelectiveScanParams p) {
  using S = typename Io<T>::S;
  __shared__ Pair<S> totals[2][kWarps];
  __shared__ S carry[2][kMaxN];
  static_assert(sizeof(totals) + sizeof(carry) <=
                    kMaxStaticSharedBytes,
                "static shared memory over the 48 KB limit");
  const int tid = threadIdx.x;
  const int64_t d = blockIdx.x, b = blockIdx.y;
  const int64_t g = d / (p.dim / p.n_groups);
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.length;
  const int64_t num_chunks = (L + kChunk - 1) / kChunk;
  const S* h0 = static_cast<const S*>(p.initial_state);
  for (int n = tid; n < N; n += kThreads) {
    carry[0][n] = h0 ? h0[b * p.initial_state_stride_batch + d * p.initial_state_stride_dim +
                          n * p.initial_state_stride_state]
                     : S(0);
  }
  const T* u_row = static_cast<const T*>(p.u) + b * p.u_stride_batch + d * p.u_stride_dim;
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.delta_stride_batch + d * p.delta_stride_dim;
  const T* z_row = p.z ? static_cast<const T*>(p.z) + b * p.z_stride_batch + d * p.z_stride_dim : nullptr;
  T* out_row = static_cast<T*>(p.out) + b * p.out_stride_batch + d * p.out_stride_dim;
  const S* A = static_cast<const S*>(p.A);
  const S bias = p.delta_bias ? static_cast<const S*>(p.delta_bias)[d * p.delta_bias_stride] : S(0);
  const S skip = p.D ? static_cast<const S*>(p.D)[d * p.D_stride] : S(0);
  const bool bc_f32 = p.bc_dtype == DType::kFloat32 && p.dtype != DType::kFloat32;
  const int64_t elem_bc = bc_f32 ? 4 : sizeof(T);
  const char* B_base = static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_group) * elem_bc;
  const char* C_base = static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_group) * elem_bc;
  int parity = 0;

  for (int64_t c = 0; c < num_chunks; ++c) {
    __syncthreads();
    const int cur = static_cast<int>(c & 1);
    if (p.chunk_states) {
      S* saved = static_cast<S*>(p.chunk_states) + ((b * p.dim + d) * num_chunks + c) * N;
      for (int n = tid; n < N; n += kThreads) saved[n] = carry[cur][n];
    }
    const int64_t t0 = c * kChunk + static_cast<int64_t>(tid) * kItems;
    S uv[kItems], dl[kItems], dsp[kItems], y[kItems];
    load_items(u_row, t0, L, uv);
    load_items(dl_row, t0, L, dl);
    prepare_delta(p, bias, t0, dl, dsp);
#pragma unroll
    for (int i = 0; i < kItems; ++i) y[i] = S(0);
    for (int n = 0; n < N; ++n) {
      S Bv[kItems], Cv[kItems], a[kItems], bb[kItems];
      load_bc<T>(B_base, bc_f32, n * p.B_stride_state, t0, L, Bv);
      load_bc<T>(C_base, bc_f32, n * p.C_stride_state, t0, L, Cv);
      const S An = A[d * p.A_stride_dim + n * p.A_stride_state];
      Pair<S> agg{S(1), S(0)};
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        a[i] = exp_s(dl[i] * An);
        bb[i] = dl[i] * uv[i] * Bv[i];
        agg = compose(agg, Pair<S>{a[i], bb[i]});
      }
      Pair<S> total;
      const Pair<S> excl = block_exclusive_scan<false>(agg, totals[parity], total);
      parity ^= 1;
      const S cin = carry[cur][n];
      S h = excl.a * cin + excl.b;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        h = a[i] * h + bb[i];
        y[i] += Cv[i] * h;
      }
      if (tid == 0) carry[cur ^ 1][n] = total.a * cin + total.b;
    }
    if (z_row) {
      S zv[kItems];
      load_items(z_row, t0, L, zv);
#pragma unroll
      for (int i = 0; i < kItems; ++i) y[i] = (y[i] + skip * uv[i]) * (zv[i] / (S(1) + exp_s(-zv[i])));
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) y[i] += skip * uv[i];
    }
    store_items(out_row, t0, L, y);
  }
  __syncthreads();
  if (p.last_state) {
    S* last = static_cast<S*>(p.last_state);
    for (int n = tid; n < N; n += kThreads)
      last[b * p.last_state_stride_batch + d * p.last_state_stride_dim + n * p.last_state_stride_state] =
          carry[num_chunks & 1][n];
  }
}

template <typename S>
struct Workspace {
  S* dB;       // (batch, groups, N, L) contiguous
  S* dC;
  S* dA_part;  // (batch, dim, N)
  S* dD_part;  // (batch, dim)
  S* dbias_part;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_kernel(SelectiveScanParams p, SelectiveScanGrads gr,
                                                       Workspace<typename Io<T>::S> ws) {
  using S = typename Io<T>::S;
  __shared__ Pair<S> totals[2][kWarps];
  __shared__ S qcarry[2][kMaxN];
  __shared__ S dA_red[kMaxN][kWarps];
  __shared__ S red[2][kWarps];
  __shared__ S dbc[2][kChunk];  // one state's dB, dC terms of the chunk in time order (coalesced atomics)
  static_assert(sizeof(totals) + sizeof(qcarry) + sizeof(dA_red) + sizeof(red) + sizeof(dbc) <=
                    kMaxStaticSharedBytes,
                "static shared memory over the 48 KB limit");
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t d = blockIdx.x, b = blockIdx.y;
  const int64_t g = d / (p.dim / p.n_groups);
  const int N = static_cast<int>(p.dstate);
  const int64_t L = p.length;
  const int64_t num_chunks = (L + kChunk - 1) / kChunk;
  const S* dlast = static_cast<const S*>(gr.dlast_state);
  for (int n = tid; n < N; n += kThreads) {
    qcarry[0][n] = dlast ? dlast[b * gr.dlast_state_stride_batch + d * gr.dlast_state_stride_dim +
                                 n * gr.dlast_state_stride_state]
                         : S(0);
    for (int w = 0; w < kWarps; ++w) dA_red[n][w] = S(0);
  }
  const T* u_row = static_cast<const T*>(p.u) + b * p.u_stride_batch + d * p.u_stride_dim;
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.delta_stride_batch + d * p.delta_stride_dim;
  const T* z_row = p.z ? static_cast<const T*>(p.z) + b * p.z_stride_batch + d * p.z_stride_dim : nullptr;
  const T* dout_row = static_cast<const T*>(gr.dout) + b * gr.dout_stride_batch + d * gr.dout_stride_dim;
  const S* A = static_cast<const S*>(p.A);
  const S bias = p.delta_bias ? static_cast<const S*>(p.delta_bias)[d * p.delta_bias_stride] : S(0);
  const S skip = p.D ? static_cast<const S*>(p.D)[d * p.D_stride] : S(0);
  const bool bc_f32 = p.bc_dtype == DType::kFloat32 && p.dtype != DType::kFloat32;
  const int64_t elem_bc = bc_f32 ? 4 : sizeof(T);
  const char* B_base = static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_group) * elem_bc;
  const char* C_base = static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_group) * elem_bc;
  S* dB_ws = ws.dB + (b * p.n_groups + g) * N * L;
  S* dC_ws = ws.dC + (b * p.n_groups + g) * N * L;
  const S* saved = static_cast<const S*>(p.chunk_states) + (b * p.dim + d) * num_chunks * N;
  S dD_acc = 0, dbias_acc = 0;
  int parity = 0;

  for (int64_t k = 0; k < num_chunks; ++k) {
    __syncthreads();
    const int64_t c = num_chunks - 1 - k;
    const int cur = static_cast<int>(k & 1);
    const int64_t t0 = c * kChunk + static_cast<int64_t>(tid) * kItems;
    S uv[kItems], dl[kItems], dsp[kItems], dy[kItems], gate[kItems];
    load_items(u_row, t0, L, uv);
    load_items(dl_row, t0, L, dl);
    load_items(dout_row, t0, L, dy);
    prepare_delta(p, bias, t0, dl, dsp);
    if (z_row) {
      S zv[kItems];
      load_items(z_row, t0, L, zv);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const S sg = S(1) / (S(1) + exp_s(-zv[i]));
        gate[i] = dy[i] * sg * (S(1) + zv[i] * (S(1) - sg));
        dy[i] = dy[i] * zv[i] * sg;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) gate[i] = S(0);
    }
    S du_acc[kItems], dd_acc[kItems], y_acc[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) du_acc[i] = dd_acc[i] = y_acc[i] = S(0);
    for (int n = 0; n < N; ++n) {
      S Bv[kItems], Cv[kItems], a[kItems], bb[kItems];
      load_bc<T>(B_base, bc_f32, n * p.B_stride_state, t0, L, Bv);
      load_bc<T>(C_base, bc_f32, n * p.C_stride_state, t0, L, Cv);
      const S An = A[d * p.A_stride_dim + n * p.A_stride_state];
      Pair<S> agg{S(1), S(0)}, ragg{S(1), S(0)};
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        a[i] = exp_s(dl[i] * An);
        bb[i] = dl[i] * uv[i] * Bv[i];
        agg = compose(agg, Pair<S>{a[i], bb[i]});
      }
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) ragg = compose(ragg, Pair<S>{a[i], a[i] * Cv[i] * dy[i]});
      Pair<S> total, rtotal;
      const Pair<S> excl = block_exclusive_scan<false>(agg, totals[parity], total);
      parity ^= 1;
      const Pair<S> rexcl = block_exclusive_scan<true>(ragg, totals[parity], rtotal);
      parity ^= 1;
      S hs[kItems + 1];
      hs[0] = excl.a * saved[c * N + n] + excl.b;
#pragma unroll
      for (int i = 0; i < kItems; ++i) hs[i + 1] = a[i] * hs[i] + bb[i];
      const S qc = qcarry[cur][n];
      S q = rexcl.a * qc + rexcl.b;
      S dA_local = 0;
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) {
        const S gi = q + Cv[i] * dy[i];
        dbc[0][tid * kItems + i] = gi * dl[i] * uv[i];
        dbc[1][tid * kItems + i] = dy[i] * hs[i + 1];
        y_acc[i] += Cv[i] * hs[i + 1];
        du_acc[i] += gi * Bv[i];
        const S w = gi * hs[i] * a[i];
        dd_acc[i] += An * w;
        dA_local += dl[i] * w;
        q = a[i] * gi;
      }
      // Consecutive threads add consecutive time steps: a warp's atomics hit one or two cache lines
      // (thread-owned items would spread them over kItems times more). The next state's block scan
      // has a __syncthreads before anyone writes dbc again.
      __syncthreads();
      const int64_t chunk_start = c * kChunk;
      for (int j = tid; j < kChunk && chunk_start + j < L; j += kThreads) {
        atomicAdd(dB_ws + n * L + chunk_start + j, dbc[0][j]);
        atomicAdd(dC_ws + n * L + chunk_start + j, dbc[1][j]);
      }
      dA_local = warp_sum(dA_local);
      if (lane == 0) dA_red[n][warp] += dA_local;
      if (tid == 0) qcarry[cur ^ 1][n] = rtotal.a * qc + rtotal.b;
    }
    S du[kItems], dd[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      du[i] = dl[i] * du_acc[i] + skip * dy[i];
      dd[i] = (dd_acc[i] + uv[i] * du_acc[i]) * dsp[i];
      if (t0 + i < L) {
        dD_acc += dy[i] * uv[i];
        dbias_acc += dd[i];
      }
      y_acc[i] = (y_acc[i] + skip * uv[i]) * gate[i];
    }
    if (gr.du) store_items(static_cast<T*>(gr.du) + b * gr.du_stride_batch + d * gr.du_stride_dim, t0, L, du);
    if (gr.ddelta)
      store_items(static_cast<T*>(gr.ddelta) + b * gr.ddelta_stride_batch + d * gr.ddelta_stride_dim, t0, L, dd);
    if (z_row && gr.dz)
      store_items(static_cast<T*>(gr.dz) + b * gr.dz_stride_batch + d * gr.dz_stride_dim, t0, L, y_acc);
  }
  dD_acc = warp_sum(dD_acc);
  dbias_acc = warp_sum(dbias_acc);
  if (lane == 0) {
    red[0][warp] = dD_acc;
    red[1][warp] = dbias_acc;
  }
  __syncthreads();
  const int final_parity = static_cast<int>(num_chunks & 1);
  for (int n = tid; n < N; n += kThreads) {
    S s = 0;
    for (int w = 0; w < kWarps; ++w) s += dA_red[n][w];
    ws.dA_part[(b * p.dim + d) * N + n] = s;
    if (gr.dinitial_state) {
      static_cast<S*>(gr.dinitial_state)[b * gr.dinitial_state_stride_batch + d * gr.dinitial_state_stride_dim +
                                         n * gr.dinitial_state_stride_state] = qcarry[final_parity][n];
    }
  }
  if (tid == 0) {
    S s0 = 0, s1 = 0;
    for (int w = 0; w < kWarps; ++w) s0 += red[0][w], s1 += red[1][w];
    ws.dD_part[b * p.dim + d] = s0;
    ws.dbias_part[b * p.dim + d] = s1;
  }
}

template <typename S>
__device__ void store_as(void* base, DType dtype, int64_t index, S v) {
  switch (dtype) {
    case DType::kFloat32: static_cast<float*>(base)[index] = static_cast<float>(v); break;
    case DType::kFloat64: static_cast<double*>(base)[index] = static_cast<double>(v); break;
    case DType::kFloat16: static_cast<__half*>(base)[index] = __float2half_rn(static_cast<float>(v)); break;
    case DType::kBFloat16:
      static_cast<__nv_bfloat16*>(base)[index] = __float2bfloat16_rn(static_cast<float>(v));
      break;
    default: break;
  }
}

// Converts dB / dC and reduces dA, dD, ddelta_bias over the batch (fixed order).
template <typename S>
__global__ void finalize_kernel(SelectiveScanParams p, SelectiveScanGrads gr, Workspace<S> ws) {
  const int64_t N = p.dstate, L = p.length;
  const int64_t bc_total = p.batch * p.n_groups * N * L;
  const int64_t total = 2 * bc_total + p.dim * N + p.dim;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (idx < 2 * bc_total) {
      const bool is_c = idx >= bc_total;
      const int64_t r = is_c ? idx - bc_total : idx;
      void* dst = is_c ? gr.dC : gr.dB;
      if (!dst) continue;
      const int64_t t = r % L, n = (r / L) % N, g = (r / (L * N)) % p.n_groups, b = r / (L * N * p.n_groups);
      const int64_t off = is_c ? b * gr.dC_stride_batch + g * gr.dC_stride_group + n * gr.dC_stride_state + t
                               : b * gr.dB_stride_batch + g * gr.dB_stride_group + n * gr.dB_stride_state + t;
      store_as<S>(dst, p.bc_dtype, off, (is_c ? ws.dC : ws.dB)[r]);
    } else if (idx < 2 * bc_total + p.dim * N) {
      const int64_t r = idx - 2 * bc_total, d = r / N, n = r % N;
      S s = 0;
      for (int64_t b = 0; b < p.batch; ++b) s += ws.dA_part[(b * p.dim + d) * N + n];
      if (gr.dA) static_cast<S*>(gr.dA)[d * gr.dA_stride_dim + n * gr.dA_stride_state] = s;
    } else {
      const int64_t d = idx - 2 * bc_total - p.dim * N;
      S s0 = 0, s1 = 0;
      for (int64_t b = 0; b < p.batch; ++b) s0 += ws.dD_part[b * p.dim + d], s1 += ws.dbias_part[b * p.dim + d];
      if (gr.dD) static_cast<S*>(gr.dD)[d * gr.dD_stride] = s0;
      if (gr.ddelta_bias) static_cast<S*>(gr.ddelta_bias)[d * gr.ddelta_bias_stride] = s1;
    }
  }
}

void check_cuda_params(const SelectiveScanParams& p, bool backward) {
  check_selective_scan_params(p, backward);
  if (p.chunk_size != kChunk) {
    throw std::invalid_argument("selective_scan: the CUDA kernels need chunk_size = " + std::to_string(kChunk) +
                                ", got " + std::to_string(p.chunk_size));
  }
  if (p.batch > 65535) throw std::invalid_argument("selective_scan: CUDA batch must be <= 65535");
  if (p.dim > 2147483647LL) throw std::invalid_argument("selective_scan: CUDA dim too large");
}

template <typename T>
void run_bwd(const SelectiveScanParams& p, const SelectiveScanGrads& gr, cudaStream_t stream) {
  using S = typename Io<T>::S;
  const int64_t bc = p.batch * p.n_groups * p.dstate * p.length;
  Workspace<S> ws;  // carved from the caller's workspace, laid out as selective_scan_bwd_workspace_bytes counts
  ws.dB = static_cast<S*>(p.workspace);
  ws.dC = ws.dB + bc;
  ws.dA_part = ws.dC + bc;
  ws.dD_part = ws.dA_part + p.batch * p.dim * p.dstate;
  ws.dbias_part = ws.dD_part + p.batch * p.dim;
  throw_on_cuda_error(cudaMemsetAsync(p.workspace, 0, static_cast<size_t>(2 * bc) * sizeof(S), stream),
                      "selective_scan workspace");
  const dim3 grid(static_cast<unsigned>(p.dim), static_cast<unsigned>(p.batch));
  LOCALMAMBA_LAUNCH(bwd_kernel<T>, grid, kThreads, 0, stream, p, gr, ws);
  check_launch("selective_scan backward kernel");
  const int64_t total = 2 * bc + p.dim * p.dstate + p.dim;
  const int64_t blocks = (total + 255) / 256;
  const unsigned grid_x = static_cast<unsigned>(blocks < 4096 ? blocks : 4096);
  LOCALMAMBA_LAUNCH(finalize_kernel<S>, grid_x, 256, 0, stream, p, gr, ws);
  check_launch("selective_scan finalize kernel");
}

}  // namespace

int64_t selective_scan_cuda_chunk_size() { return kChunk; }

void selective_scan_fwd(const SelectiveScanParams& p) {
  check_cuda_params(p, false);
  if (p.batch == 0 || p.dim == 0) return;
  if (device_count() == 0) throw std::runtime_error(device_status());
  cudaStream_t stream = static_cast<cudaStream_t>(p.cuda_stream);
  const dim3 grid(static_cast<unsigned>(p.dim), static_cast<unsigned>(p.batch));
  switch (p.dtype) {
    case DType::kFloat32: LOCALMAMBA_LAUNCH(fwd_kernel<float>, grid, kThreads, 0, stream, p); break;
    case DType::kFloat16: LOCALMAMBA_LAUNCH(fwd_kernel<__half>, grid, kThreads, 0, stream, p); break;
    case DType::kBFloat16: LOCALMAMBA_LAUNCH(fwd_kernel<__nv_bfloat16>, grid, kThreads, 0, stream, p); break;
    case DType::kFloat64: LOCALMAMBA_LAUNCH(fwd_kernel<double>, grid, kThreads, 0, stream, p); break;
    default: throw std::invalid_argument("selective_scan: unsupported dtype");
  }
  check_launch("selective_scan forward kernel");
}

void selective_scan_bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  check_cuda_params(p, true);
  if (!g.dout) throw std::invalid_argument("selective_scan: dout must not be null");
  if (p.batch == 0 || p.dim == 0) return;  // nothing to do, and a (dim, 0) grid is an invalid launch
  check_workspace(p.workspace, p.workspace_bytes, selective_scan_bwd_workspace_bytes(p), "selective_scan backward");
  if (device_count() == 0) throw std::runtime_error(device_status());
  cudaStream_t stream = static_cast<cudaStream_t>(p.cuda_stream);
  switch (p.dtype) {
    case DType::kFloat32: run_bwd<float>(p, g, stream); break;
    case DType::kFloat16: run_bwd<__half>(p, g, stream); break;
    case DType::kBFloat16: run_bwd<__nv_bfloat16>(p, g, stream); break;
    case DType::kFloat64: run_bwd<double>(p, g, stream); break;
    default: throw std::invalid_argument("selective_scan: unsupported dtype");
  }
}

}  // namespace cuda
}  // namespace localmamba
