// Internal: the CPU backward of the channels-last directional scan (contract:
// directional_scan_train.h). Included by the per-ISA translation units right after
// directional_scan_infer_cpu_kernel.h, whose lane helpers (load_lanes, store_lanes, infer_row)
// and decay() it reuses; the recurrence and its adjoint run on whole vectors of channels.
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/directional_scan_train.h"

namespace localmamba {
namespace {

// Row s of a writable row set (null for s < 0).
template <typename S>
inline S* grad_row(const ChannelsLastGradRows& r, int64_t b, int64_t k, int64_t s) {
  if (!r.ptr || s < 0) return nullptr;
  return static_cast<S*>(r.ptr) + b * r.stride_batch + k * r.stride_direction + s * r.stride_step;
}

// Per-step vectors of one lane group over the whole sequence, and its stored forward states.
template <typename S>
struct TrainLaneBuffers {
  using V = typename VecOf<S>::type;
  V *dl, *dsp, *uu, *dlu, *dy, *gz, *ypre, *gs, *gd;
  V *H, *DA;  // H: L + 1 rows of N states (row 0 = h_{-1} = 0, row t + 1 = h_t); DA: exp(delta_t A)
  const S **brow, **crow;
};

// Bytes of one unit's buffers (per parallel block): the lane arrays above plus the unit's
// dB / dC accumulators (L * N vectors each).
template <typename S>
size_t train_scratch_bytes(const DirectionalScanInferParams& p) {
  using V = typename VecOf<S>::type;
  const int64_t L = p.length, N = p.dstate;
  return 9 * arena_bytes<V>(L) + arena_bytes<V>((L + 1) * N) + 3 * arena_bytes<V>(L * N) +
         2 * arena_bytes<const S*>(L);
}

// Forward re-run of states [n0, n0 + NB) (registers): h_t and exp(delta_t A) stored for every
// step, ypre[t] += sum_n C_n h_n.
template <int NB, typename V, typename S>
inline void train_fwd_block(const V* a2, int64_t n0, int64_t N, int64_t L, const V* dl, const V* dlu,
                            const S* const* brow, const S* const* crow, V* H, V* DA, V* ypre) {
  V hk[NB], ak[NB];
  for (int k = 0; k < NB; ++k) hk[k] = V{}, ak[k] = a2[n0 + k];
  for (int64_t t = 0; t < L; ++t) {
    const V d = dl[t], x = dlu[t];
    const S* bi = brow[t] + n0;
    const S* ci = crow[t] + n0;
    V* Ht = H + (t + 1) * N + n0;
    V* DAt = DA + t * N + n0;
    V acc = ypre[t];
#pragma GCC unroll 16
    for (int k = 0; k < NB; ++k) {
      const V da = decay(ak[k] * d);
      hk[k] = da * hk[k] + x * bi[k];
      Ht[k] = hk[k];
      DAt[k] = da;
      acc += ci[k] * hk[k];
    }
    ypre[t] = acc;
  }
}

// Adjoint of states [n0, n0 + NB) backwards in time (q_n = dL/dh_t and the dA sums in registers):
// adds the (t, n) dB / dC terms into dBacc / dCacc, sum_n q_n B_n into gs[t] and the delta term
// sum_n q_n A_n exp(delta_t A_n) h_{t-1,n} into gd[t]; writes the dA sums to dA_out[n0 + k].
template <int NB, typename V, typename S>
inline void train_adjoint_block(const V* a, int64_t n0, int64_t N, int64_t L, const V* dl, const V* dlu,
                                const V* dy, const S* const* brow, const S* const* crow, const V* H, const V* DA,
                                V* dBacc, V* dCacc, V* gs, V* gd, V* dA_out) {
  V q[NB], acc[NB], ak[NB];
  for (int k = 0; k < NB; ++k) q[k] = V{}, acc[k] = V{}, ak[k] = a[n0 + k];
  for (int64_t t = L - 1; t >= 0; --t) {
    const V d = dl[t], dyt = dy[t], x = dlu[t];
    const S* bi = brow[t] + n0;
    const S* ci = crow[t] + n0;
    const V* Ht = H + (t + 1) * N + n0;
    const V* Hp = H + t * N + n0;
    const V* DAt = DA + t * N + n0;
    V* dBt = dBacc + t * N + n0;
    V* dCt = dCacc + t * N + n0;
    V s = gs[t], e_sum = gd[t];
#pragma GCC unroll 16
    for (int k = 0; k < NB; ++k) {
      const V qk = q[k] + ci[k] * dyt;
      dCt[k] += dyt * Ht[k];
      dBt[k] += qk * x;
      s += qk * bi[k];
      const V e = qk * Hp[k] * DAt[k];
      e_sum += e * ak[k];
      acc[k] += e * d;
      q[k] = qk * DAt[k];
    }
    gs[t] = s;
    gd[t] = e_sum;
  }
  for (int k = 0; k < NB; ++k) dA_out[n0 + k] = acc[k];
}

// Runs `block<NB>(n0)` over the N states in register blocks of 8, 4, then 1.
template <typename F>
inline void for_state_blocks(int64_t N, F&& block) {
  int64_t n0 = 0;
  for (; n0 + 8 <= N; n0 += 8) block(std::integral_constant<int, 8>{}, n0);
  for (; n0 + 4 <= N; n0 += 4) block(std::integral_constant<int, 4>{}, n0);
  for (; n0 < N; ++n0) block(std::integral_constant<int, 1>{}, n0);
}

// Gradient of one vector of channels [c0, c0 + cn) of direction k, batch b: re-runs the forward
// recurrence, then the adjoint backwards in time. Adds this group's dB / dC terms into dBacc /
// dCacc ((t, n) vectors) and writes its per-channel dA, dD, dbias sums into `small`.
template <typename S>
void train_bwd_channels(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g, int64_t b, int64_t k,
                        int64_t c0, int64_t cn, const TrainLaneBuffers<S>& buf, typename VecOf<S>::type* dBacc,
                        typename VecOf<S>::type* dCacc, S* small) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, R = p.dt_rank, L = p.length, d0 = k * p.dim + c0;
  const int64_t* idx = p.index + k * L;
  // a: A; a2: A scaled for the forward kernel's decay(), so the recomputed states are the forward's
  V a[kSelectiveScanMaxDstate], a2[kSelectiveScanMaxDstate], w[kDirectionalScanMaxDtRank];
  for (int64_t n = 0; n < N; ++n) {
    S col[lanes] = {};
    for (int64_t j = 0; j < cn; ++j) col[j] = static_cast<const S*>(p.A)[(d0 + j) * p.A_stride_dim + n * p.A_stride_state];
    a[n] = load_lanes<V>(col, cn);
    for (int64_t j = 0; j < cn; ++j) col[j] *= kDecayScale<S>;
    a2[n] = load_lanes<V>(col, cn);
  }
  for (int64_t r = 0; r < R; ++r) {
    S col[lanes] = {};
    for (int64_t j = 0; j < cn; ++j)
      col[j] = static_cast<const S*>(p.dt_weight)[(d0 + j) * p.dt_weight_stride_dim + r * p.dt_weight_stride_rank];
    w[r] = load_lanes<V>(col, cn);
  }
  auto per_channel = [&](const void* base, int64_t stride) {
    S col[lanes] = {};
    for (int64_t j = 0; j < cn; ++j) col[j] = base ? static_cast<const S*>(base)[(d0 + j) * stride] : S(0);
    return load_lanes<V>(col, cn);
  };
  const V bias = per_channel(p.delta_bias, p.delta_bias_stride);
  const V skip = per_channel(p.D, p.D_stride);
  alignas(64) static const S zeros[kSelectiveScanMaxDstate] = {};
  V *dl = buf.dl, *dsp = buf.dsp, *uu = buf.uu, *dlu = buf.dlu, *dy = buf.dy, *gz = buf.gz, *ypre = buf.ypre;
  V *gs = buf.gs, *gd = buf.gd, *H = buf.H, *DA = buf.DA;

  // Per-step inputs: delta (before softplus), u, z, the output gradient, the B / C rows.
  for (int64_t t = 0; t < L; ++t) {
    const int64_t tok = idx[t];
    auto step = [&](const ChannelsLastRows& r) { return r.by_token ? tok : t; };
    const S* ur = infer_row<S>(p.u, b, k, step(p.u));
    uu[t] = ur ? load_lanes<V>(ur + c0, cn) : V{};
    V d = bias;
    if (R > 0) {
      if (const S* dt = infer_row<S>(p.dt, b, k, step(p.dt)))
        for (int64_t r = 0; r < R; ++r) d += w[r] * dt[r];
    } else if (const S* dr = infer_row<S>(p.delta, b, k, step(p.delta))) {
      d += load_lanes<V>(dr + c0, cn);
    }
    dl[t] = d;
    const S* br = infer_row<S>(p.B, b, k, step(p.B));
    const S* cr = infer_row<S>(p.C, b, k, step(p.C));
    buf.brow[t] = br ? br : zeros;
    buf.crow[t] = cr ? cr : zeros;
    const S* gr = infer_row<S>(g.dout, b, k, tok);
    dy[t] = gr ? load_lanes<V>(gr + c0, cn) : V{};
    if (p.z.ptr) {
      const S* zr = infer_row<S>(p.z, b, k, step(p.z));
      gz[t] = zr ? load_lanes<V>(zr + c0, cn) : V{};
    }
  }
  S* dls = reinterpret_cast<S*>(dl);
  S* dsps = reinterpret_cast<S*>(dsp);
  if (p.delta_softplus) {
    softplus_array(dls, dls, dsps, L * lanes);
  } else {
    for (int64_t t = 0; t < L; ++t) dsp[t] = V{} + S(1);
  }
  if (p.z.ptr) {  // dy = dout silu(z) (gradient of the pre-gate output); gz = dout silu'(z)
    S* sg = reinterpret_cast<S*>(ypre);  // ypre is free until the forward below
    sigmoid_array(reinterpret_cast<const S*>(gz), sg, L * lanes);
    for (int64_t t = 0; t < L; ++t) {
      const V z = gz[t], s = ypre[t], go = dy[t];
      dy[t] = go * z * s;
      gz[t] = go * s * (S(1) + z * (S(1) - s));
    }
  }

  // Forward recurrence (as the forward kernel computes it), then the adjoint backwards in time.
  for (int64_t t = 0; t < L; ++t) dlu[t] = dl[t] * uu[t], ypre[t] = skip * uu[t], gs[t] = gd[t] = V{};
  for (int64_t n = 0; n < N; ++n) H[n] = V{};
  for_state_blocks(N, [&](auto nb, int64_t n0) {
    train_fwd_block<decltype(nb)::value>(a2, n0, N, L, dl, dlu, buf.brow, buf.crow, H, DA, ypre);
  });
  V dA_acc[kSelectiveScanMaxDstate];
  for_state_blocks(N, [&](auto nb, int64_t n0) {
    train_adjoint_block<decltype(nb)::value>(a, n0, N, L, dl, dlu, dy, buf.brow, buf.crow, H, DA, dBacc, dCacc, gs,
                                             gd, dA_acc);
  });
  V dD = V{}, dbias = V{};
  for (int64_t t = 0; t < L; ++t) {
    const int64_t tok = idx[t];
    const V du = dl[t] * gs[t] + skip * dy[t];
    const V ddl = (gd[t] + uu[t] * gs[t]) * dsp[t];
    dD += dy[t] * uu[t];
    dbias += ddl;
    auto step = [&](const ChannelsLastGradRows& r) { return r.by_token ? tok : t; };
    if (S* row = grad_row<S>(g.du, b, k, step(g.du))) store_lanes(row + c0, du, cn);
    if (S* row = grad_row<S>(g.ddelta, b, k, step(g.ddelta))) store_lanes(row + c0, ddl, cn);
    if (p.z.ptr)
      if (S* row = grad_row<S>(g.dz, b, k, step(g.dz))) store_lanes(row + c0, ypre[t] * gz[t], cn);
  }
  const int64_t per_ch = N + 2;
  for (int64_t j = 0; j < cn; ++j) {
    S* sp = small + (b * p.num_directions * p.dim + d0 + j) * per_ch;
    for (int64_t n = 0; n < N; ++n) sp[n] = dA_acc[n][j];
    sp[N] = dD[j];
    sp[N + 1] = dbias[j];
  }
}

template <typename S>
void dir_train_bwd_kernel(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, K = p.num_directions, KD = K * p.dim;
  const int64_t segments = directional_scan_train_segments(p);
  const int64_t per_segment = (p.dim + segments - 1) / segments;  // segments divide whole blocks
  const int64_t seg_channels =
      (per_segment + kDirectionalScanInferBlock - 1) / kDirectionalScanInferBlock * kDirectionalScanInferBlock;
  // workspace: dB / dC partials (segments, B, K, L, N) each, then (B, K * dim, N + 2)
  S* part_b = static_cast<S*>(g.workspace);
  const int64_t part_n = segments * p.batch * K * L * N;
  S* part_c = part_b + part_n;
  S* small = part_c + part_n;
  const size_t bytes = train_scratch_bytes<S>(p);

  parallel_for(directional_scan_train_units(p), 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(bytes);
    Arena arena{static_cast<char*>(scratch.ptr)};
    TrainLaneBuffers<S> buf;
    buf.dl = arena.take<V>(L), buf.dsp = arena.take<V>(L), buf.uu = arena.take<V>(L), buf.dlu = arena.take<V>(L);
    buf.dy = arena.take<V>(L), buf.gz = arena.take<V>(L), buf.ypre = arena.take<V>(L);
    buf.gs = arena.take<V>(L), buf.gd = arena.take<V>(L);
    buf.H = arena.take<V>((L + 1) * N), buf.DA = arena.take<V>(L * N);
    V* dBacc = arena.take<V>(L * N);
    V* dCacc = arena.take<V>(L * N);
    buf.brow = arena.take<const S*>(L), buf.crow = arena.take<const S*>(L);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t seg = unit % segments, bk = unit / segments;
      const int64_t k = bk % K, b = bk / K;
      const int64_t c_begin = seg * seg_channels, c_end = ss_min(p.dim, c_begin + seg_channels);
      for (int64_t i = 0; i < L * N; ++i) dBacc[i] = dCacc[i] = V{};
      for (int64_t c0 = c_begin; c0 < c_end; c0 += lanes)
        train_bwd_channels<S>(p, g, b, k, c0, ss_min(lanes, c_end - c0), buf, dBacc, dCacc, small);
      S* pb = part_b + ((seg * p.batch + b) * K + k) * L * N;
      S* pc = part_c + ((seg * p.batch + b) * K + k) * L * N;
      for (int64_t i = 0; i < L * N; ++i) pb[i] = hsum(dBacc[i]), pc[i] = hsum(dCacc[i]);
    }
  });

  // Fixed-order sums: dB / dC over the segments, dA / dD / dbias over the batch.
  parallel_for(p.batch * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t k = bk % K, b = bk / K;
      const int64_t* idx = p.index + k * L;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t tok = idx[t];
        S* rb = grad_row<S>(g.dB, b, k, g.dB.by_token ? tok : t);
        S* rc = grad_row<S>(g.dC, b, k, g.dC.by_token ? tok : t);
        for (int64_t n = 0; n < N; ++n) {
          S sb = 0, sc = 0;
          for (int64_t seg = 0; seg < segments; ++seg) {
            const int64_t at = ((seg * p.batch + b) * K + k) * L * N + t * N + n;
            sb += part_b[at], sc += part_c[at];
          }
          if (rb) rb[n] = sb;
          if (rc) rc[n] = sc;
        }
      }
    }
  });
  parallel_for(KD, 64, [&](int64_t begin, int64_t end) {
    for (int64_t d = begin; d < end; ++d) {
      for (int64_t n = 0; n < N + 2; ++n) {
        S s = 0;
        for (int64_t b = 0; b < p.batch; ++b) s += small[(b * KD + d) * (N + 2) + n];
        if (n < N) {
          static_cast<S*>(g.dA)[d * g.dA_stride_dim + n * g.dA_stride_state] = s;
        } else if (n == N && g.dD) {
          static_cast<S*>(g.dD)[d * g.dD_stride] = s;
        } else if (n == N + 1 && g.ddelta_bias) {
          static_cast<S*>(g.ddelta_bias)[d * g.ddelta_bias_stride] = s;
        }
      }
    }
  });
}

void run_dir_train_bwd(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  if (p.dtype == DType::kFloat64) {
    dir_train_bwd_kernel<double>(p, g);
  } else {
    dir_train_bwd_kernel<float>(p, g);
  }
}

}  // namespace
}  // namespace localmamba
