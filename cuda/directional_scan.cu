// CUDA directional selective scan, forward and backward (contract:
// cpp/include/localmamba/directional_scan.h). The recurrence and its chunked block-wide pair
// scans are the selective scan's (cuda/selective_scan.cu); what differs is the indexing:
//
// * one block per (channel c of a direction, batch b) runs the K directions of that channel one
//   after the other (global channel d = k * dim + c), so a reduce_sum output and a shared u's
//   gradient are accumulated over the directions in direction order inside one block --
//   deterministic, no atomics;
// * every load of step t goes through the direction's index map (token-order inputs: position
//   index[k, t], padding steps read u = delta (dt) = B = C = z = 0; sequence-order inputs:
//   position t), and every store of y goes to token index[k, t] (padding steps are not stored);
// * with dt_rank > 0, delta = sum_r dt_weight[d, r] * dt[r, .] is formed in registers.
//
// The backward follows the selective scan's: recompute the chunk's states from the saved
// chunk-start state, reverse scan for the adjoint. dB, dC and ddt (shared by the channels of a
// direction) are accumulated with float atomics in a state-type workspace, then converted;
// dA, dD, ddelta_bias, ddt_weight and dweights are per-(batch, channel) partials reduced over the
// batch in a fixed order by the finalize kernel.
//
// Instantiations: forward and backward for 4 input types, 2 finalize kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "launch.cuh"
#include "localmamba/directional_scan.h"
#include "localmamba/selective_scan.h"
#include "localmamba_cuda.h"
#include "scan_primitives.cuh"

namespace localmamba {
namespace cuda {
namespace {

using namespace scan_detail;

constexpr int kMaxR = static_cast<int>(kDirectionalScanMaxDtRank);

template <typename T, typename S>
__device__ __forceinline__ S load_at(const T* row, int64_t pos) {
  return pos >= 0 ? static_cast<S>(Io<T>::load(row[pos])) : S(0);
}

// B / C / dt element: the input type or float32 (uniform branch).
template <typename T, typename S>
__device__ __forceinline__ S load_bc_at(const void* row, bool f32, int64_t pos) {
  if (pos < 0) return S(0);
  return f32 ? static_cast<S>(static_cast<const float*>(row)[pos]) : static_cast<S>(Io<T>::load(static_cast<const T*>(row)[pos]));
}

// Positions of the thread's items: `pos` in the inputs (-1: padding / past the end), `tok` in the output.
__device__ __forceinline__ void item_positions(const DirectionalScanParams& p, const int64_t* idx, int64_t t0,
                                               int64_t (&pos)[kItems], int64_t (&tok)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int64_t t = t0 + i;
    const bool valid = t < p.length;
    tok[i] = valid ? idx[t] : -1;
    pos[i] = !valid ? -1 : (p.sequence_inputs ? t : tok[i]);
  }
}

// Raw delta (before bias) of the thread's items: loaded, or projected from dt in registers.
template <typename T, typename S>
__device__ __forceinline__ void load_delta(const DirectionalScanParams& p, int64_t b, int64_t g, int64_t c, int64_t d,
                                           const int64_t (&pos)[kItems], S (&dl)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) dl[i] = S(0);
  if (p.dt_rank > 0) {
    const T* dt_base = static_cast<const T*>(p.dt) + b * p.dt_stride_batch + g * p.dt_stride_direction;
    const S* w = static_cast<const S*>(p.dt_weight) + d * p.dt_weight_stride_dim;
    for (int64_t r = 0; r < p.dt_rank; ++r) {
      const S wr = w[r * p.dt_weight_stride_rank];
      const T* row = dt_base + r * p.dt_stride_rank;
#pragma unroll
      for (int i = 0; i < kItems; ++i) dl[i] += wr * load_at<T, S>(row, pos[i]);
    }
  } else {
    const T* row = static_cast<const T*>(p.delta) + b * p.delta_stride_batch + g * p.delta_stride_direction +
                   c * p.delta_stride_dim;
#pragma unroll
    for (int i = 0; i < kItems; ++i) dl[i] = load_at<T, S>(row, pos[i]);
  }
}

// delta = softplus(raw + bias); past the end: 0 (identity step a = 1, b = 0).
template <typename S>
__device__ __forceinline__ void prepare_delta(const DirectionalScanParams& p, S bias, int64_t t0, S (&dl)[kItems],
                                              S (&dsp)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const S raw = dl[i] + bias;
    S v = raw, dv = S(1);
    if (p.delta_softplus && raw <= S(20)) {
      v = log1p_s(exp_s(raw));
      dv = S(1) / (S(1) + exp_s(-raw));
    }
    dl[i] = t0 + i < p.length ? v : S(0);
    dsp[i] = dv;
  }
}

template <typename S>
struct FwdWs {
  S* acc;  // (batch, dim, tokens): reduce_sum accumulator, or null
};

template <typename T>
__global__ void __launch_bounds__(kThreads) dir_fwd_kernel(DirectionalScanParams p, FwdWs<typename Io<T>::S> ws) {
  using S = typename Io<T>::S;
  __shared__ Pair<S> totals[2][kWarps];
  __shared__ S carry[2][kMaxN];
  static_assert(sizeof(totals) + sizeof(carry) <=
                    kMaxStaticSharedBytes,
                "static shared memory over the 48 KB limit");
  const int tid = threadIdx.x;
  const int64_t c = blockIdx.x, b = blockIdx.y;
  const int64_t K = p.num_directions, Din = p.dim, L = p.length, NT = p.num_tokens;
  const int N = static_cast<int>(p.dstate);
  const int64_t num_chunks = (L + kChunk - 1) / kChunk;
  const S* A = static_cast<const S*>(p.A);
  const bool bc_f32 = p.bc_dtype == DType::kFloat32 && p.dtype != DType::kFloat32;
  const int64_t elem_bc = bc_f32 ? 4 : sizeof(T);
  int parity = 0;

  for (int64_t g = 0; g < K; ++g) {
    const int64_t d = g * Din + c;
    const int64_t* idx = p.index + g * L;
    __syncthreads();
    for (int n = tid; n < N; n += kThreads) carry[0][n] = S(0);
    const T* u_row = static_cast<const T*>(p.u) + b * p.u_stride_batch + g * p.u_stride_direction + c * p.u_stride_dim;
    const T* z_row = p.z ? static_cast<const T*>(p.z) + b * p.z_stride_batch + g * p.z_stride_direction +
                               c * p.z_stride_dim
                         : nullptr;
    const S bias = p.delta_bias ? static_cast<const S*>(p.delta_bias)[d * p.delta_bias_stride] : S(0);
    const S skip = p.D ? static_cast<const S*>(p.D)[d * p.D_stride] : S(0);
    const S w_g = p.weights ? static_cast<const S*>(p.weights)[g * p.weights_stride] : S(1);
    const char* B_base = static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_direction) * elem_bc;
    const char* C_base = static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_direction) * elem_bc;

    for (int64_t ch = 0; ch < num_chunks; ++ch) {
      __syncthreads();
      const int cur = static_cast<int>(ch & 1);
      if (p.chunk_states) {
        S* saved = static_cast<S*>(p.chunk_states) + ((b * K * Din + d) * num_chunks + ch) * N;
        for (int n = tid; n < N; n += kThreads) saved[n] = carry[cur][n];
      }
      const int64_t t0 = ch * kChunk + static_cast<int64_t>(tid) * kItems;
      int64_t pos[kItems], tok[kItems];
      item_positions(p, idx, t0, pos, tok);
      S uv[kItems], dl[kItems], dsp[kItems], y[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        uv[i] = load_at<T, S>(u_row, pos[i]);
        y[i] = S(0);
      }
      load_delta<T, S>(p, b, g, c, d, pos, dl);
      prepare_delta(p, bias, t0, dl, dsp);
      for (int n = 0; n < N; ++n) {
        const char* Brow = B_base + n * p.B_stride_state * elem_bc;
        const char* Crow = C_base + n * p.C_stride_state * elem_bc;
        const S An = A[d * p.A_stride_dim + n * p.A_stride_state];
        S a[kItems], bb[kItems], Cv[kItems];
        Pair<S> agg{S(1), S(0)};
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          a[i] = exp_s(dl[i] * An);
          bb[i] = dl[i] * uv[i] * load_bc_at<T, S>(Brow, bc_f32, pos[i]);
          Cv[i] = load_bc_at<T, S>(Crow, bc_f32, pos[i]);
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
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        S v = y[i] + skip * uv[i];
        if (z_row) {
          const S zv = load_at<T, S>(z_row, pos[i]);
          v *= zv / (S(1) + exp_s(-zv));
        }
        v *= w_g;
        if (tok[i] < 0) continue;
        if (p.reduce_sum) {
          S* acc = ws.acc + (b * Din + c) * NT + tok[i];
          *acc = g == 0 ? v : *acc + v;  // each token once per direction; directions in order
        } else {
          static_cast<T*>(p.out)[b * p.out_stride_batch + g * p.out_stride_direction + c * p.out_stride_dim +
                                 tok[i] * p.out_stride_token] = Io<T>::store(v);
        }
      }
    }
  }
  if (p.reduce_sum) {
    __syncthreads();
    for (int64_t t = tid; t < NT; t += kThreads) {
      static_cast<T*>(p.out)[b * p.out_stride_batch + c * p.out_stride_dim + t * p.out_stride_token] =
          Io<T>::store(ws.acc[(b * Din + c) * NT + t]);
    }
  }
}

template <typename S>
struct BwdWs {
  S* dB;        // (batch, K, N, Tin)
  S* dC;
  S* ddt;       // (batch, K, R, Tin) or null
  S* du_acc;    // (batch, dim, Tin) when u is shared, else null
  S* dA_part;   // (batch, K*dim, N)
  S* dD_part;   // (batch, K*dim)
  S* dbias_part;
  S* dw_part;
  S* dW_part;   // (batch, K*dim, R)
};

template <typename T>
__global__ void __launch_bounds__(kThreads) dir_bwd_kernel(DirectionalScanParams p, DirectionalScanGrads gr,
                                                           BwdWs<typename Io<T>::S> ws) {
  using S = typename Io<T>::S;
  __shared__ Pair<S> totals[2][kWarps];
  __shared__ S qcarry[2][kMaxN];
  __shared__ S dA_red[kMaxN][kWarps];
  __shared__ S dW_red[kMaxR][kWarps];
  __shared__ S red[3][kWarps];
  static_assert(sizeof(totals) + sizeof(qcarry) + sizeof(dA_red) + sizeof(dW_red) + sizeof(red) <=
                    kMaxStaticSharedBytes,
                "static shared memory over the 48 KB limit");
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t c = blockIdx.x, b = blockIdx.y;
  const int64_t K = p.num_directions, Din = p.dim, L = p.length, R = p.dt_rank, KD = K * Din;
  const int64_t Tin = p.sequence_inputs ? p.length : p.num_tokens;
  const int N = static_cast<int>(p.dstate);
  const int64_t num_chunks = (L + kChunk - 1) / kChunk;
  const S* A = static_cast<const S*>(p.A);
  const bool bc_f32 = p.bc_dtype == DType::kFloat32 && p.dtype != DType::kFloat32;
  const int64_t elem_bc = bc_f32 ? 4 : sizeof(T);
  const bool shared_u = ws.du_acc != nullptr;
  int parity = 0;

  for (int64_t g = 0; g < K; ++g) {
    const int64_t d = g * Din + c;
    const int64_t* idx = p.index + g * L;
    __syncthreads();
    for (int n = tid; n < N; n += kThreads) {
      qcarry[0][n] = S(0);
      for (int w = 0; w < kWarps; ++w) dA_red[n][w] = S(0);
    }
    for (int64_t r = tid; r < R; r += kThreads)
      for (int w = 0; w < kWarps; ++w) dW_red[r][w] = S(0);
    const T* u_row = static_cast<const T*>(p.u) + b * p.u_stride_batch + g * p.u_stride_direction + c * p.u_stride_dim;
    const T* z_row = p.z ? static_cast<const T*>(p.z) + b * p.z_stride_batch + g * p.z_stride_direction +
                               c * p.z_stride_dim
                         : nullptr;
    const T* dout_row = static_cast<const T*>(gr.dout) + b * gr.dout_stride_batch + c * gr.dout_stride_dim +
                        (p.reduce_sum ? 0 : g * gr.dout_stride_direction);
    const S bias = p.delta_bias ? static_cast<const S*>(p.delta_bias)[d * p.delta_bias_stride] : S(0);
    const S skip = p.D ? static_cast<const S*>(p.D)[d * p.D_stride] : S(0);
    const S w_g = p.weights ? static_cast<const S*>(p.weights)[g * p.weights_stride] : S(1);
    const char* B_base = static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_direction) * elem_bc;
    const char* C_base = static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_direction) * elem_bc;
    S* dB_ws = ws.dB + (b * K + g) * N * Tin;
    S* dC_ws = ws.dC + (b * K + g) * N * Tin;
    const S* saved = static_cast<const S*>(p.chunk_states) + (b * KD + d) * num_chunks * N;
    S dD_acc = 0, dbias_acc = 0, dw_acc = 0;

    for (int64_t k = 0; k < num_chunks; ++k) {
      __syncthreads();
      const int64_t ch = num_chunks - 1 - k;
      const int cur = static_cast<int>(k & 1);
      const int64_t t0 = ch * kChunk + static_cast<int64_t>(tid) * kItems;
      int64_t pos[kItems], tok[kItems];
      item_positions(p, idx, t0, pos, tok);
      S uv[kItems], dl[kItems], dsp[kItems], dy[kItems], gate[kItems], dor[kItems], zv[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        uv[i] = load_at<T, S>(u_row, pos[i]);
        dor[i] = tok[i] >= 0 ? static_cast<S>(Io<T>::load(dout_row[tok[i] * gr.dout_stride_token])) : S(0);
        dy[i] = w_g * dor[i];
        zv[i] = z_row ? load_at<T, S>(z_row, pos[i]) : S(0);
      }
      load_delta<T, S>(p, b, g, c, d, pos, dl);
      prepare_delta(p, bias, t0, dl, dsp);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if (z_row) {
          const S sg = S(1) / (S(1) + exp_s(-zv[i]));
          gate[i] = dy[i] * sg * (S(1) + zv[i] * (S(1) - sg));
          dy[i] = dy[i] * zv[i] * sg;
          dor[i] *= zv[i] * sg;
        } else {
          gate[i] = S(0);
        }
      }
      S du_acc[kItems], dd_acc[kItems], y_acc[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) du_acc[i] = dd_acc[i] = y_acc[i] = S(0);
      for (int n = 0; n < N; ++n) {
        const char* Brow = B_base + n * p.B_stride_state * elem_bc;
        const char* Crow = C_base + n * p.C_stride_state * elem_bc;
        const S An = A[d * p.A_stride_dim + n * p.A_stride_state];
        S a[kItems], bb[kItems], Bv[kItems], Cv[kItems];
        Pair<S> agg{S(1), S(0)}, ragg{S(1), S(0)};
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          Bv[i] = load_bc_at<T, S>(Brow, bc_f32, pos[i]);
          Cv[i] = load_bc_at<T, S>(Crow, bc_f32, pos[i]);
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
        hs[0] = excl.a * saved[ch * N + n] + excl.b;
#pragma unroll
        for (int i = 0; i < kItems; ++i) hs[i + 1] = a[i] * hs[i] + bb[i];
        const S qc = qcarry[cur][n];
        S q = rexcl.a * qc + rexcl.b;
        S dA_local = 0;
#pragma unroll
        for (int i = kItems - 1; i >= 0; --i) {
          const S gi = q + Cv[i] * dy[i];
          if (pos[i] >= 0) {  // padding steps of token-order inputs have no B / C to differentiate
            atomicAdd(dC_ws + n * Tin + pos[i], dy[i] * hs[i + 1]);
            atomicAdd(dB_ws + n * Tin + pos[i], gi * dl[i] * uv[i]);
          }
          y_acc[i] += Cv[i] * hs[i + 1];
          du_acc[i] += gi * Bv[i];
          const S w = gi * hs[i] * a[i];
          dd_acc[i] += An * w;
          dA_local += dl[i] * w;
          q = a[i] * gi;
        }
        dA_local = warp_sum(dA_local);
        if (lane == 0) dA_red[n][warp] += dA_local;
        if (tid == 0) qcarry[cur ^ 1][n] = rtotal.a * qc + rtotal.b;
      }
      S dd[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const bool in = t0 + i < L;
        const S du = dl[i] * du_acc[i] + skip * dy[i];
        dd[i] = in ? (dd_acc[i] + uv[i] * du_acc[i]) * dsp[i] : S(0);
        const S y_pre = y_acc[i] + skip * uv[i];
        if (in) {
          dD_acc += dy[i] * uv[i];
          dbias_acc += dd[i];
          dw_acc += dor[i] * y_pre;
        }
        if (pos[i] < 0) continue;
        if (gr.du) {
          if (shared_u) {
            S* acc = ws.du_acc + (b * Din + c) * Tin + pos[i];
            *acc = g == 0 ? du : *acc + du;  // each token once per direction; directions in order
          } else {
            static_cast<T*>(gr.du)[b * gr.du_stride_batch + g * gr.du_stride_direction + c * gr.du_stride_dim +
                                   pos[i]] = Io<T>::store(du);
          }
        }
        if (gr.ddelta && R == 0)
          static_cast<T*>(gr.ddelta)[b * gr.ddelta_stride_batch + g * gr.ddelta_stride_direction +
                                     c * gr.ddelta_stride_dim + pos[i]] = Io<T>::store(dd[i]);
        if (z_row && gr.dz)
          static_cast<T*>(gr.dz)[b * gr.dz_stride_batch + g * gr.dz_stride_direction + c * gr.dz_stride_dim +
                                 pos[i]] = Io<T>::store(y_pre * gate[i]);
      }
      if (R > 0) {  // delta = sum_r W[d, r] dt[r]: dW[d, r] += <ddelta, dt[r]>, ddt[r] += W[d, r] ddelta
        const T* dt_base = static_cast<const T*>(p.dt) + b * p.dt_stride_batch + g * p.dt_stride_direction;
        const S* wrow = static_cast<const S*>(p.dt_weight) + d * p.dt_weight_stride_dim;
        for (int64_t r = 0; r < R; ++r) {
          const T* row = dt_base + r * p.dt_stride_rank;
          const S wr = wrow[r * p.dt_weight_stride_rank];
          S v = 0;
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            v += dd[i] * load_at<T, S>(row, pos[i]);
            if (ws.ddt && pos[i] >= 0) atomicAdd(ws.ddt + ((b * K + g) * R + r) * Tin + pos[i], wr * dd[i]);
          }
          v = warp_sum(v);
          if (lane == 0) dW_red[r][warp] += v;
        }
      }
    }
    dD_acc = warp_sum(dD_acc);
    dbias_acc = warp_sum(dbias_acc);
    dw_acc = warp_sum(dw_acc);
    if (lane == 0) {
      red[0][warp] = dD_acc;
      red[1][warp] = dbias_acc;
      red[2][warp] = dw_acc;
    }
    __syncthreads();
    for (int n = tid; n < N; n += kThreads) {
      S s = 0;
      for (int w = 0; w < kWarps; ++w) s += dA_red[n][w];
      ws.dA_part[(b * KD + d) * N + n] = s;
    }
    for (int64_t r = tid; r < R; r += kThreads) {
      S s = 0;
      for (int w = 0; w < kWarps; ++w) s += dW_red[r][w];
      ws.dW_part[(b * KD + d) * R + r] = s;
    }
    if (tid == 0) {
      S s0 = 0, s1 = 0, s2 = 0;
      for (int w = 0; w < kWarps; ++w) s0 += red[0][w], s1 += red[1][w], s2 += red[2][w];
      ws.dD_part[b * KD + d] = s0;
      ws.dbias_part[b * KD + d] = s1;
      ws.dw_part[b * KD + d] = s2;
    }
  }
  if (shared_u && gr.du) {
    __syncthreads();
    for (int64_t t = tid; t < Tin; t += kThreads)
      static_cast<T*>(gr.du)[b * gr.du_stride_batch + c * gr.du_stride_dim + t] =
          Io<T>::store(ws.du_acc[(b * Din + c) * Tin + t]);
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

// Converts dB / dC / ddt and reduces the per-(batch, channel) partials over the batch (fixed order).
template <typename S>
__global__ void dir_finalize_kernel(DirectionalScanParams p, DirectionalScanGrads gr, BwdWs<S> ws) {
  const int64_t K = p.num_directions, N = p.dstate, R = p.dt_rank, KD = K * p.dim;
  const int64_t Tin = p.sequence_inputs ? p.length : p.num_tokens;
  const int64_t bc = p.batch * K * N * Tin, dtn = ws.ddt ? p.batch * K * R * Tin : 0;
  const int64_t total = 2 * bc + dtn + KD * N + KD * R + KD + K;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (idx < 2 * bc) {
      const bool is_c = idx >= bc;
      const int64_t r = is_c ? idx - bc : idx;
      void* dst = is_c ? gr.dC : gr.dB;
      if (!dst) continue;
      const int64_t t = r % Tin, n = (r / Tin) % N, g = (r / (Tin * N)) % K, b = r / (Tin * N * K);
      const int64_t off = is_c ? b * gr.dC_stride_batch + g * gr.dC_stride_direction + n * gr.dC_stride_state + t
                               : b * gr.dB_stride_batch + g * gr.dB_stride_direction + n * gr.dB_stride_state + t;
      store_as<S>(dst, p.bc_dtype, off, (is_c ? ws.dC : ws.dB)[r]);
    } else if (idx < 2 * bc + dtn) {
      const int64_t r = idx - 2 * bc;
      const int64_t t = r % Tin, k = (r / Tin) % R, g = (r / (Tin * R)) % K, b = r / (Tin * R * K);
      store_as<S>(gr.ddt, p.dtype,
                  b * gr.ddt_stride_batch + g * gr.ddt_stride_direction + k * gr.ddt_stride_rank + t, ws.ddt[r]);
    } else if (idx < 2 * bc + dtn + KD * N) {
      const int64_t r = idx - 2 * bc - dtn, d = r / N, n = r % N;
      S s = 0;
      for (int64_t b = 0; b < p.batch; ++b) s += ws.dA_part[(b * KD + d) * N + n];
      if (gr.dA) static_cast<S*>(gr.dA)[d * gr.dA_stride_dim + n * gr.dA_stride_state] = s;
    } else if (idx < 2 * bc + dtn + KD * N + KD * R) {
      const int64_t r = idx - 2 * bc - dtn - KD * N, d = r / R, k = r % R;
      S s = 0;
      for (int64_t b = 0; b < p.batch; ++b) s += ws.dW_part[(b * KD + d) * R + k];
      if (gr.ddt_weight)
        static_cast<S*>(gr.ddt_weight)[d * gr.ddt_weight_stride_dim + k * gr.ddt_weight_stride_rank] = s;
    } else if (idx < 2 * bc + dtn + KD * N + KD * R + KD) {
      const int64_t d = idx - 2 * bc - dtn - KD * N - KD * R;
      S s0 = 0, s1 = 0;
      for (int64_t b = 0; b < p.batch; ++b) s0 += ws.dD_part[b * KD + d], s1 += ws.dbias_part[b * KD + d];
      if (gr.dD) static_cast<S*>(gr.dD)[d * gr.dD_stride] = s0;
      if (gr.ddelta_bias) static_cast<S*>(gr.ddelta_bias)[d * gr.ddelta_bias_stride] = s1;
    } else {
      const int64_t g = idx - 2 * bc - dtn - KD * N - KD * R - KD;
      S s = 0;
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t c = 0; c < p.dim; ++c) s += ws.dw_part[b * KD + g * p.dim + c];
      if (gr.dweights && p.weights) static_cast<S*>(gr.dweights)[g * gr.dweights_stride] = s;
    }
  }
}

void check_cuda(const DirectionalScanParams& p, bool backward) {
  check_directional_scan_params(p, backward, false);  // the index table lives on the device
  if (p.chunk_size != kChunk) {
    throw std::invalid_argument("directional_scan: the CUDA kernels need chunk_size = " + std::to_string(kChunk) +
                                ", got " + std::to_string(p.chunk_size));
  }
  if (p.batch > 65535) throw std::invalid_argument("directional_scan: CUDA batch must be <= 65535");
  if (p.dim > 2147483647LL) throw std::invalid_argument("directional_scan: CUDA dim too large");
}

template <typename T>
void run_fwd(const DirectionalScanParams& p, cudaStream_t stream) {
  using S = typename Io<T>::S;
  FwdWs<S> ws{p.reduce_sum ? static_cast<S*>(p.workspace) : nullptr};
  const dim3 grid(static_cast<unsigned>(p.dim), static_cast<unsigned>(p.batch));
  LOCALMAMBA_LAUNCH(dir_fwd_kernel<T>, grid, kThreads, 0, stream, p, ws);
  check_launch("directional_scan forward kernel");
}

// Carves the caller's workspace in the order directional_scan_bwd_workspace_bytes counts it.
template <typename S>
BwdWs<S> carve_bwd_workspace(const DirectionalScanParams& p, const DirectionalScanGrads& gr) {
  const int64_t K = p.num_directions, KD = K * p.dim, R = p.dt_rank, Tin = directional_scan_input_length(p);
  const int64_t bc = p.batch * K * p.dstate * Tin, dtn = p.batch * K * R * Tin;
  const int64_t dun = directional_scan_shared_u(p) ? p.batch * p.dim * Tin : 0;
  BwdWs<S> ws;
  ws.dB = static_cast<S*>(p.workspace);
  ws.dC = ws.dB + bc;
  ws.ddt = (R > 0 && gr.ddt) ? ws.dC + bc : nullptr;
  ws.du_acc = (dun > 0 && gr.du) ? ws.dC + bc + dtn : nullptr;
  ws.dA_part = ws.dC + bc + dtn + dun;
  ws.dD_part = ws.dA_part + p.batch * KD * p.dstate;
  ws.dbias_part = ws.dD_part + p.batch * KD;
  ws.dw_part = ws.dbias_part + p.batch * KD;
  ws.dW_part = ws.dw_part + p.batch * KD;
  return ws;
}

template <typename T>
void run_bwd(const DirectionalScanParams& p, const DirectionalScanGrads& gr, cudaStream_t stream) {
  using S = typename Io<T>::S;
  const int64_t K = p.num_directions, KD = K * p.dim, R = p.dt_rank, Tin = directional_scan_input_length(p);
  const BwdWs<S> ws = carve_bwd_workspace<S>(p, gr);
  const int64_t atomics = p.batch * K * (2 * p.dstate + R) * Tin;  // dB, dC, ddt: accumulated, so zeroed
  throw_on_cuda_error(cudaMemsetAsync(p.workspace, 0, static_cast<size_t>(atomics) * sizeof(S), stream),
                      "directional_scan workspace");
  const dim3 grid(static_cast<unsigned>(p.dim), static_cast<unsigned>(p.batch));
  LOCALMAMBA_LAUNCH(dir_bwd_kernel<T>, grid, kThreads, 0, stream, p, gr, ws);
  check_launch("directional_scan backward kernel");
  const int64_t dtn = ws.ddt ? p.batch * K * R * Tin : 0;
  const int64_t total = 2 * p.batch * K * p.dstate * Tin + dtn + KD * p.dstate + KD * R + KD + K;
  const int64_t blocks = (total + 255) / 256;
  const unsigned grid_x = static_cast<unsigned>(blocks < 4096 ? blocks : 4096);
  LOCALMAMBA_LAUNCH(dir_finalize_kernel<S>, grid_x, 256, 0, stream, p, gr, ws);
  check_launch("directional_scan finalize kernel");
}

}  // namespace

void directional_scan_fwd(const DirectionalScanParams& p) {
  check_cuda(p, false);
  if (p.batch == 0 || p.dim == 0) return;
  check_workspace(p.workspace, p.workspace_bytes, directional_scan_fwd_workspace_bytes(p), "directional_scan forward");
  if (device_count() == 0) throw std::runtime_error(device_status());
  cudaStream_t stream = static_cast<cudaStream_t>(p.cuda_stream);
  switch (p.dtype) {
    case DType::kFloat32: run_fwd<float>(p, stream); break;
    case DType::kFloat16: run_fwd<__half>(p, stream); break;
    case DType::kBFloat16: run_fwd<__nv_bfloat16>(p, stream); break;
    case DType::kFloat64: run_fwd<double>(p, stream); break;
    default: throw std::invalid_argument("directional_scan: unsupported dtype");
  }
}

void directional_scan_bwd(const DirectionalScanParams& p, const DirectionalScanGrads& g) {
  check_cuda(p, true);
  if (!g.dout) throw std::invalid_argument("directional_scan: dout must not be null");
  if (p.batch == 0 || p.dim == 0) return;
  check_workspace(p.workspace, p.workspace_bytes, directional_scan_bwd_workspace_bytes(p), "directional_scan backward");
  if (device_count() == 0) throw std::runtime_error(device_status());
  cudaStream_t stream = static_cast<cudaStream_t>(p.cuda_stream);
  switch (p.dtype) {
    case DType::kFloat32: run_bwd<float>(p, g, stream); break;
    case DType::kFloat16: run_bwd<__half>(p, g, stream); break;
    case DType::kBFloat16: run_bwd<__nv_bfloat16>(p, g, stream); break;
    case DType::kFloat64: run_bwd<double>(p, g, stream); break;
    default: throw std::invalid_argument("directional_scan: unsupported dtype");
  }
}

}  // namespace cuda
}  // namespace localmamba
