// Internal: the CPU backward of the channels-last directional scan (contract:
// directional_scan_train.h). Included by the per-ISA translation units right after
// directional_scan_infer_cpu_kernel.h, whose lane helpers (load_lanes, load_part, store_part,
// infer_row) and decay() it reuses; the recurrence and its adjoint run on whole vectors of channels.
//
// Per lane group (one vector of channels) the N states run in register blocks of
// kTrainStateBlock: the block's forward recurrence (storing its h_t and exp(delta_t A) for every
// step) and right after it the block's adjoint backwards in time, so the stored states of one
// block are all that is live. dB / dC are summed over a unit's lane groups in (step, state)
// vector accumulators and then over the lanes by a transpose-add tree (lane_sums). All scratch
// lives in the caller's workspace: one slot per thread (directional_scan_train_workspace_bytes).
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include <utility>

#include "localmamba/directional_scan_train.h"

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define LOCALMAMBA_TRAIN_SHUFFLEVECTOR 1  // __builtin_shufflevector (GCC >= 12, clang)
#endif

namespace localmamba {
namespace {

static_assert(LOCALMAMBA_SS_VECTOR_BYTES <= kDirectionalScanTrainMaxVectorBytes, "train slot sized too small");

// Row s of a writable row set (null for s < 0).
template <typename S>
inline S* grad_row(const ChannelsLastGradRows& r, int64_t b, int64_t k, int64_t s) {
  if (!r.ptr || s < 0) return nullptr;
  return static_cast<S*>(r.ptr) + b * r.stride_batch + k * r.stride_direction + s * r.stride_step;
}

// One thread's scratch, carved from its workspace slot: per-step vectors of one lane group over
// the whole sequence, the stored forward of one state block, and the unit's dB / dC / ddt accumulators.
template <typename S>
struct TrainSlot {
  using V = typename VecOf<S>::type;
  V *dl, *dsp, *uu, *dlu, *dy, *gz, *ypre, *gs, *gd;
  V* H;   // (L + 1) rows of kTrainStateBlock: row 0 = h_{-1} = 0, row t + 1 = h_t
  V* DA;  // L rows of kTrainStateBlock: exp(delta_t A)
  V *dBacc, *dCacc;  // (L, N): the unit's dB / dC terms, summed over its lane groups
  V* dtacc;          // (L, dt_rank): the unit's ddt terms, likewise
  const S **brow, **crow;

  TrainSlot(char* base, int64_t L, int64_t N, int64_t R) {
    Arena arena{base};
    for (V** a : {&dl, &dsp, &uu, &dlu, &dy, &gz, &ypre, &gs, &gd}) *a = arena.take<V>(L);
    H = arena.take<V>((L + 1) * kDirectionalScanTrainStateBlock);
    DA = arena.take<V>(L * kDirectionalScanTrainStateBlock);
    dBacc = arena.take<V>(L * N);
    dCacc = arena.take<V>(L * N);
    dtacc = arena.take<V>(L * R);
    brow = arena.take<const S*>(L);
    crow = arena.take<const S*>(L);
  }
};

// States [n0, n0 + NB) of one lane group: the forward recurrence (as the forward kernel computes it:
// same decay()), storing h_t and exp(delta_t A), adding sum_n C_n h_n into ypre[t]; then the
// adjoint backwards in time with q_n = dL/dh_t in registers: adds the (t, n) dB / dC terms into
// dBacc / dCacc, sum_n q_n B_n into gs[t] and the delta term sum_n A_n e_n into gd[t], where
// e_n = q_{t-1,n} h_{t-1,n} (q_{t-1} = q_t exp(delta_t A) is the adjoint carried to h_{t-1}), and
// writes the dA sums sum_t e_n delta_t to dA_out[n0 + k]. kFirst: the unit's first lane group, which
// stores its dB / dC terms instead of adding them (no zeroing pass).
template <int NB, bool kFirst, typename V, typename S>
inline void train_state_block(const V* a, const V* a2, int64_t n0, int64_t N, int64_t L, const TrainSlot<S>& s,
                              V* dA_out) {
  V* H = s.H;
  V* DA = s.DA;
  {
    V hk[NB], ak[NB];
    for (int k = 0; k < NB; ++k) hk[k] = V{}, H[k] = V{}, ak[k] = a2[n0 + k];
    for (int64_t t = 0; t < L; ++t) {
      const V d = s.dl[t], x = s.dlu[t];
      const S* bi = s.brow[t] + n0;
      const S* ci = s.crow[t] + n0;
      V* Ht = H + (t + 1) * NB;
      V* DAt = DA + t * NB;
      V acc = s.ypre[t];
#pragma GCC unroll 16
      for (int k = 0; k < NB; ++k) {
        const V da = decay(ak[k] * d);
        hk[k] = da * hk[k] + x * bi[k];
        Ht[k] = hk[k];
        DAt[k] = da;
        acc += ci[k] * hk[k];
      }
      s.ypre[t] = acc;
    }
  }
  V q[NB], dA[NB], ht[NB];
  for (int k = 0; k < NB; ++k) q[k] = V{}, dA[k] = V{}, ht[k] = H[L * NB + k];
  for (int64_t t = L - 1; t >= 0; --t) {
    const V d = s.dl[t], dyt = s.dy[t], x = s.dlu[t];
    const S* bi = s.brow[t] + n0;
    const S* ci = s.crow[t] + n0;
    const V* Hp = H + t * NB;
    const V* DAt = DA + t * NB;
    V* dBt = s.dBacc + t * N + n0;
    V* dCt = s.dCacc + t * N + n0;
    V gsum = s.gs[t], esum = s.gd[t];
#pragma GCC unroll 16
    for (int k = 0; k < NB; ++k) {
      const V qk = q[k] + ci[k] * dyt;
      dCt[k] = kFirst ? dyt * ht[k] : dCt[k] + dyt * ht[k];
      dBt[k] = kFirst ? qk * x : dBt[k] + qk * x;
      gsum += qk * bi[k];
      q[k] = qk * DAt[k];
      ht[k] = Hp[k];
      const V e = q[k] * ht[k];
      esum += e * a[n0 + k];
      dA[k] += e * d;
    }
    s.gs[t] = gsum;
    s.gd[t] = esum;
  }
  for (int k = 0; k < NB; ++k) dA_out[n0 + k] = dA[k];
}

// Runs `block<NB>(n0)` over the N states in register blocks of kDirectionalScanTrainStateBlock, then 1.
template <typename F>
inline void for_train_state_blocks(int64_t N, F&& block) {
  constexpr int nb = static_cast<int>(kDirectionalScanTrainStateBlock);
  int64_t n0 = 0;
  for (; n0 + nb <= N; n0 += nb) block(std::integral_constant<int, nb>{}, n0);
  for (; n0 < N; ++n0) block(std::integral_constant<int, 1>{}, n0);
}

// lane_sums(v): the vector whose lane m is the sum of v[m]'s lanes, for W = lanes vectors v[0..W).
// A transpose-add tree (W - 1 vector adds, two shuffles each) instead of W horizontal sums: each
// fold halves the segment every input vector occupies. The order of the additions is fixed.
#ifdef LOCALMAMBA_TRAIN_SHUFFLEVECTOR
// Output lane i of a fold to segments of size Sg: output segment m = 2 j + e holds the two halves
// of segment j (size 2 Sg) of the first (e = 0) or second (e = 1) input, added.
template <int W, int Sg, bool kHigh>
constexpr int fold_lane(int i) {
  return (i / Sg % 2) * W + (i / Sg / 2) * 2 * Sg + i % Sg + (kHigh ? Sg : 0);
}
template <int W, int Sg, typename V, size_t... I>
inline V fold_pair(V x, V y, std::index_sequence<I...>) {
  return __builtin_shufflevector(x, y, fold_lane<W, Sg, false>(I)...) +
         __builtin_shufflevector(x, y, fold_lane<W, Sg, true>(I)...);
}
// M vectors v[0], v[stride], ... -> one vector of M segments (size W / M), segment m = v[m * stride]'s sum.
template <typename V, int W, int M>
struct LaneSums {
  static V run(const V* v, int stride) {
    const V even = LaneSums<V, W, M / 2>::run(v, 2 * stride);
    const V odd = LaneSums<V, W, M / 2>::run(v + stride, 2 * stride);
    return fold_pair<W, W / M>(even, odd, std::make_index_sequence<W>{});
  }
};
template <typename V, int W>
struct LaneSums<V, W, 1> {
  static V run(const V* v, int) { return *v; }
};
template <typename V>
inline V lane_sums(const V* v) {
  constexpr int W = static_cast<int>(sizeof(V) / sizeof(v[0][0]));
  return LaneSums<V, W, W>::run(v, 1);
}
#else
template <typename V>
inline V lane_sums(const V* v) {
  V r;
  for (int m = 0; m < static_cast<int>(sizeof(V) / sizeof(v[0][0])); ++m) r[m] = hsum(v[m]);
  return r;
}
#endif

// A unit's (L, N) accumulators (dB / dC / ddt) summed over the lanes: (t, n) -> out_row(t)[n].
template <typename S, typename Row>
inline void store_lane_sums(const typename VecOf<S>::type* acc, int64_t L, int64_t N, Row&& out_row) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  V tile[lanes];
  for (int64_t t = 0; t < L; ++t) {
    S* row = out_row(t);
    if (!row) continue;
    for (int64_t n0 = 0; n0 < N; n0 += lanes) {
      const int64_t nn = ss_min(lanes, N - n0);
      for (int64_t j = 0; j < lanes; ++j) tile[j] = j < nn ? acc[t * N + n0 + j] : V{};
      store_part(row + n0, lane_sums(tile), nn);
    }
  }
}

// Gradient of one vector of channels [c0, c0 + cn) of direction k, batch b: per-step inputs, then
// the state blocks (forward and adjoint), then the per-step gradients. Adds this group's dB / dC
// (and ddt) terms into the slot's accumulators (the unit's first group stores them) and writes its
// per-channel dA, dD, dbias (and ddt_weight) sums into `small`.
template <typename S>
void train_bwd_channels(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g, int64_t b, int64_t k,
                        int64_t c0, int64_t cn, bool first, const TrainSlot<S>& s, S* small) {
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
  V *dl = s.dl, *dsp = s.dsp, *uu = s.uu, *dlu = s.dlu, *dy = s.dy, *gz = s.gz, *ypre = s.ypre, *gs = s.gs, *gd = s.gd;

  // Per-step inputs: delta (before softplus), u, z, the output gradient, the B / C rows.
  for (int64_t t = 0; t < L; ++t) {
    const int64_t tok = idx[t];
    auto step = [&](const ChannelsLastRows& r) { return r.by_token ? tok : t; };
    const S* ur = infer_row<S>(p.u, b, k, step(p.u));
    uu[t] = ur ? load_part<V>(ur + c0, cn) : V{};
    V d = bias;
    if (R > 0) {
      if (const S* dt = infer_row<S>(p.dt, b, k, step(p.dt)))
        for (int64_t r = 0; r < R; ++r) d += w[r] * dt[r];
    } else if (const S* dr = infer_row<S>(p.delta, b, k, step(p.delta))) {
      d += load_part<V>(dr + c0, cn);
    }
    dl[t] = d;
    const S* br = infer_row<S>(p.B, b, k, step(p.B));
    const S* cr = infer_row<S>(p.C, b, k, step(p.C));
    s.brow[t] = br ? br : zeros;
    s.crow[t] = cr ? cr : zeros;
    const S* gr = infer_row<S>(g.dout, b, k, tok);
    dy[t] = gr ? load_part<V>(gr + c0, cn) : V{};
    if (p.z.ptr) {
      const S* zr = infer_row<S>(p.z, b, k, step(p.z));
      gz[t] = zr ? load_part<V>(zr + c0, cn) : V{};
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
      const V z = gz[t], sgt = ypre[t], go = dy[t];
      dy[t] = go * z * sgt;
      gz[t] = go * sgt * (S(1) + z * (S(1) - sgt));
    }
  }

  for (int64_t t = 0; t < L; ++t) dlu[t] = dl[t] * uu[t], ypre[t] = skip * uu[t], gs[t] = gd[t] = V{};
  V dA_acc[kSelectiveScanMaxDstate];
  for_train_state_blocks(N, [&](auto nb, int64_t n0) {
    if (first) {
      train_state_block<decltype(nb)::value, true>(a, a2, n0, N, L, s, dA_acc);
    } else {
      train_state_block<decltype(nb)::value, false>(a, a2, n0, N, L, s, dA_acc);
    }
  });
  V dD = V{}, dbias = V{};
  V* dw = a2;  // the ddt_weight sums (a2 is free now)
  for (int64_t r = 0; r < R; ++r) dw[r] = V{};
  const bool want_ddt = g.ddt.ptr != nullptr, want_dw = g.ddt_weight != nullptr;
  for (int64_t t = 0; t < L; ++t) {
    const int64_t tok = idx[t];
    const V du = dl[t] * gs[t] + skip * dy[t];
    const V ddl = (gd[t] + uu[t] * gs[t]) * dsp[t];
    dD += dy[t] * uu[t];
    dbias += ddl;
    if (want_ddt) {
      V* acc = s.dtacc + t * R;
      for (int64_t r = 0; r < R; ++r) acc[r] = first ? ddl * w[r] : acc[r] + ddl * w[r];
    }
    if (want_dw)
      if (const S* dt = infer_row<S>(p.dt, b, k, p.dt.by_token ? tok : t))
        for (int64_t r = 0; r < R; ++r) dw[r] += ddl * dt[r];
    auto step = [&](const ChannelsLastGradRows& r) { return r.by_token ? tok : t; };
    if (S* row = grad_row<S>(g.du, b, k, step(g.du))) store_part(row + c0, du, cn);
    if (S* row = grad_row<S>(g.ddelta, b, k, step(g.ddelta))) store_part(row + c0, ddl, cn);
    if (p.z.ptr)
      if (S* row = grad_row<S>(g.dz, b, k, step(g.dz))) store_part(row + c0, ypre[t] * gz[t], cn);
  }
  const int64_t per_ch = N + 2 + R;
  for (int64_t j = 0; j < cn; ++j) {
    S* sp = small + (b * p.num_directions * p.dim + d0 + j) * per_ch;
    for (int64_t n = 0; n < N; ++n) sp[n] = dA_acc[n][j];
    sp[N] = dD[j];
    sp[N + 1] = dbias[j];
    for (int64_t r = 0; r < R; ++r) sp[N + 2 + r] = dw[r][j];
  }
}

template <typename S>
void dir_train_bwd_kernel(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, K = p.num_directions, KD = K * p.dim, R = p.dt_rank;
  const DirectionalScanTrainLayout lay = directional_scan_train_layout(p);
  const int64_t segments = lay.segments, units = directional_scan_train_units(p);
  const int64_t slots = ss_min(ss_min(lay.slots_in(g.workspace_bytes), get_num_threads()), units);
  const int64_t per_segment = (p.dim + segments - 1) / segments;  // segments divide whole blocks
  const int64_t seg_channels =
      (per_segment + kDirectionalScanInferBlock - 1) / kDirectionalScanInferBlock * kDirectionalScanInferBlock;
  // workspace: [partials over segments, when segments > 1: dB, dC (segments, B, K, L, N), ddt
  // (segments, B, K, L, R)], (B, K * dim, N + 2 + R), slots
  char* ws = static_cast<char*>(g.workspace);
  S* part_b = reinterpret_cast<S*>(ws);
  const int64_t part_n = segments > 1 ? segments * p.batch * K * L * N : 0;
  S* part_c = part_b + part_n;
  S* part_t = part_c + part_n;
  S* small = reinterpret_cast<S*>(ws + lay.small_offset);

  // Each slot (thread) runs a fixed contiguous range of units; a unit's results do not depend on
  // which slot ran it, so the split never changes a value.
  parallel_for(slots, 1, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      const TrainSlot<S> s(ws + lay.slot_offset + slot * lay.slot_bytes, L, N, R);
      for (int64_t unit = units * slot / slots; unit < units * (slot + 1) / slots; ++unit) {
        const int64_t seg = unit % segments, bk = unit / segments;
        const int64_t k = bk % K, b = bk / K;
        const int64_t c_begin = seg * seg_channels, c_end = ss_min(p.dim, c_begin + seg_channels);
        for (int64_t c0 = c_begin; c0 < c_end; c0 += lanes)
          train_bwd_channels<S>(p, g, b, k, c0, ss_min(lanes, c_end - c0), c0 == c_begin, s, small);
        const int64_t* idx = p.index + k * L;
        if (segments == 1) {
          auto rows = [&](const ChannelsLastGradRows& r) {
            return [&](int64_t t) { return grad_row<S>(r, b, k, r.by_token ? idx[t] : t); };
          };
          store_lane_sums<S>(s.dBacc, L, N, rows(g.dB));
          store_lane_sums<S>(s.dCacc, L, N, rows(g.dC));
          if (g.ddt.ptr) store_lane_sums<S>(s.dtacc, L, R, rows(g.ddt));
        } else {
          const int64_t row0 = (seg * p.batch + b) * K + k;
          S *pb = part_b + row0 * L * N, *pc = part_c + row0 * L * N, *pt = part_t + row0 * L * R;
          store_lane_sums<S>(s.dBacc, L, N, [&](int64_t t) { return pb + t * N; });
          store_lane_sums<S>(s.dCacc, L, N, [&](int64_t t) { return pc + t * N; });
          if (g.ddt.ptr) store_lane_sums<S>(s.dtacc, L, R, [&](int64_t t) { return pt + t * R; });
        }
      }
    }
  });

  // Fixed-order sums: dB / dC / ddt over the segments, dA / dD / dbias / ddt_weight over the batch.
  if (segments > 1) {
    // partials (segments, B, K, L, width) -> rows of `width` values
    auto sum_segments = [&](const S* part, const ChannelsLastGradRows& rows, int64_t width, int64_t b, int64_t k) {
      const int64_t* idx = p.index + k * L;
      for (int64_t t = 0; t < L; ++t) {
        S* row = grad_row<S>(rows, b, k, rows.by_token ? idx[t] : t);
        if (!row) continue;
        for (int64_t n = 0; n < width; ++n) {
          S sum = 0;
          for (int64_t seg = 0; seg < segments; ++seg) sum += part[(((seg * p.batch + b) * K + k) * L + t) * width + n];
          row[n] = sum;
        }
      }
    };
    parallel_for(p.batch * K, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bk = begin; bk < end; ++bk) {
        sum_segments(part_b, g.dB, N, bk / K, bk % K);
        sum_segments(part_c, g.dC, N, bk / K, bk % K);
        if (g.ddt.ptr) sum_segments(part_t, g.ddt, R, bk / K, bk % K);
      }
    });
  }
  const int64_t per_ch = N + 2 + R;
  parallel_for(KD, 16, [&](int64_t begin, int64_t end) {
    S* out = small + begin * per_ch;  // batch 0's rows [begin, end) collect the sums, batch in order
    const int64_t count = (end - begin) * per_ch;
    for (int64_t b = 1; b < p.batch; ++b) {
      const S* src = small + (b * KD + begin) * per_ch;
      for (int64_t i = 0; i < count; ++i) out[i] += src[i];
    }
    for (int64_t d = begin; d < end; ++d) {
      const S* sd = small + d * per_ch;
      for (int64_t n = 0; n < N; ++n) static_cast<S*>(g.dA)[d * g.dA_stride_dim + n * g.dA_stride_state] = sd[n];
      if (g.dD) static_cast<S*>(g.dD)[d * g.dD_stride] = sd[N];
      if (g.ddelta_bias) static_cast<S*>(g.ddelta_bias)[d * g.ddelta_bias_stride] = sd[N + 1];
      if (g.ddt_weight)
        for (int64_t r = 0; r < R; ++r)
          static_cast<S*>(g.ddt_weight)[d * g.ddt_weight_stride_dim + r * g.ddt_weight_stride_rank] = sd[N + 2 + r];
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
