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
  V *dl, *dsp, *uu, *dy, *gz, *ypre, *H, *DA;
  const S **brow, **crow;
};

// Bytes of one unit's buffers (per parallel block): the lane arrays above plus the unit's
// dB / dC accumulators (L * N vectors each).
template <typename S>
size_t train_scratch_bytes(const DirectionalScanInferParams& p) {
  using V = typename VecOf<S>::type;
  const int64_t L = p.length, N = p.dstate;
  return 6 * arena_bytes<V>(L) + 4 * arena_bytes<V>(L * N) + 2 * arena_bytes<const S*>(L);
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
  V a[kSelectiveScanMaxDstate], a2[kSelectiveScanMaxDstate], h[kSelectiveScanMaxDstate], w[kDirectionalScanMaxDtRank];
  for (int64_t n = 0; n < N; ++n) {
    S col[lanes] = {};
    for (int64_t j = 0; j < cn; ++j) col[j] = static_cast<const S*>(p.A)[(d0 + j) * p.A_stride_dim + n * p.A_stride_state];
    a[n] = load_lanes<V>(col, cn);
    for (int64_t j = 0; j < cn; ++j) col[j] *= kDecayScale<S>;
    a2[n] = load_lanes<V>(col, cn);
    h[n] = V{};
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
  V *dl = buf.dl, *dsp = buf.dsp, *uu = buf.uu, *dy = buf.dy, *gz = buf.gz, *ypre = buf.ypre;
  V *H = buf.H, *DA = buf.DA;

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

  // Forward recurrence (as the forward kernel computes it): h_t and exp(delta_t A) for every step, y
  // before the gate.
  for (int64_t t = 0; t < L; ++t) {
    const V d = dl[t], x = d * uu[t];
    const S* bi = buf.brow[t];
    const S* ci = buf.crow[t];
    V y = skip * uu[t];
    V* Ht = H + t * N;
    V* DAt = DA + t * N;
    for (int64_t n = 0; n < N; ++n) {
      const V da = decay(a2[n] * d);
      h[n] = da * h[n] + x * bi[n];
      Ht[n] = h[n];
      DAt[n] = da;
      y += ci[n] * h[n];
    }
    ypre[t] = y;
  }

  // Adjoint, backwards in time: q_n holds dL/dh_t (h[] is reused for it).
  V dA_acc[kSelectiveScanMaxDstate];
  for (int64_t n = 0; n < N; ++n) h[n] = V{}, dA_acc[n] = V{};
  V dD = V{}, dbias = V{};
  for (int64_t t = L - 1; t >= 0; --t) {
    const int64_t tok = idx[t];
    const V d = dl[t], dyt = dy[t], x = d * uu[t];
    const S* bi = buf.brow[t];
    const S* ci = buf.crow[t];
    const V* Ht = H + t * N;
    const V* Hp = t > 0 ? H + (t - 1) * N : nullptr;
    const V* DAt = DA + t * N;
    V* dBt = dBacc + t * N;
    V* dCt = dCacc + t * N;
    V gs = V{}, gd = V{};
    for (int64_t n = 0; n < N; ++n) {
      const V q = h[n] + ci[n] * dyt;
      dCt[n] += dyt * Ht[n];
      dBt[n] += q * x;
      gs += q * bi[n];
      const V e = Hp ? q * Hp[n] * DAt[n] : V{};
      gd += e * a[n];
      dA_acc[n] += e * d;
      h[n] = q * DAt[n];
    }
    const V du = d * gs + skip * dyt;
    const V ddl = (gd + uu[t] * gs) * dsp[t];
    dD += dyt * uu[t];
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
    buf.dl = arena.take<V>(L), buf.dsp = arena.take<V>(L), buf.uu = arena.take<V>(L);
    buf.dy = arena.take<V>(L), buf.gz = arena.take<V>(L), buf.ypre = arena.take<V>(L);
    buf.H = arena.take<V>(L * N), buf.DA = arena.take<V>(L * N);
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
