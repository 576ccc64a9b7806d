// Internal: the forward-only channels-last directional scan (contract: directional_scan_infer.h).
// Included by the per-ISA translation units right after selective_scan_cpu_kernel.h, whose
// vector type, vexp and softplus / sigmoid helpers it reuses.
//
// Lanes are channels: one vector holds `lanes` channels of one direction, and the N states are
// N independent recurrences h_n (one vector each), so a step costs N exps on whole vectors and
// 2N FMAs, with no horizontal sum. The per-step quantities shared by the N states (delta,
// delta * u, the B / C rows) are prepared for a chunk of steps first; the states then run
// over the chunk in blocks of at most 8 (registers), summing C_n h_n into a per-step vector.
// No heap allocation: the per-chunk arrays live on the stack (bounded by kInferChunk and
// kSelectiveScanMaxDstate / kDirectionalScanMaxDtRank).
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/directional_scan.h"
#include "localmamba/directional_scan_infer.h"

#if LOCALMAMBA_SS_VECTOR_BYTES == 64 && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>  // always-inline intrinsics with their own target attributes; the maskz forms
                        // (all lanes) avoid GCC 12's maybe-uninitialized warning on _mm512_undefined_ps
#define LOCALMAMBA_INFER_AVX512 1
#endif

namespace localmamba {
namespace {

constexpr int64_t kInferChunk = 32;  // steps prepared at once (their vectors stay in L1)

// The decay exp(delta * A) is computed as 2^(delta * A log2(e)) with A log2(e) prepared once per
// call (kDecayScale), so a state's step costs one multiply before the polynomial. float:
// k = round(y), r = y - k in [-0.5, 0.5], 2^r by a degree-5 near-minimax polynomial (max relative
// error 2.4e-7, ~2 ulp, like vexp), scaled by 2^k: through vscalefps on AVX-512, which needs no
// clamp (2^k underflows to 0 for any k < -149), and elsewhere through the exponent bits, for which
// y is clamped to >= -126 first (2^-126 ~ 1e-38 stands for 0; delta * A <= 0 in every model, but
// any finite y is safe). double is the checking path: libm exp per lane.
template <typename S> constexpr S kDecayScale = S(1);
template <> constexpr float kDecayScale<float> = 1.44269504088896341f;

inline vfloat decay(vfloat y) {
#ifdef LOCALMAMBA_INFER_AVX512
  const vfloat k = (vfloat)_mm512_maskz_roundscale_ps(0xffff, (__m512)y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  y = y < -126.0f ? vfloat{} - 126.0f : y;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const vfloat t = y + magic;
  const vfloat k = t - magic;
#endif
  const vfloat r = y - k;
  vfloat p = vfloat{} + 1.3276456156745553e-3f;
  p = p * r + 9.675540961325169e-3f;
  p = p * r + 5.550713464617729e-2f;
  p = p * r + 2.4022120237350464e-1f;
  p = p * r + 6.931469440460205e-1f;
  p = p * r + 1.0000001192092896f;
#ifdef LOCALMAMBA_INFER_AVX512
  return (vfloat)_mm512_maskz_scalef_ps(0xffff, (__m512)p, (__m512)k);
#else
  typedef uint32_t vuint __attribute__((vector_size(LOCALMAMBA_SS_VECTOR_BYTES)));
  vuint bits;
  std::memcpy(&bits, &t, sizeof(bits));  // low bits of t: 0x4b400000 + k
  bits = (bits << 23) + ((127u - 0x4b400000u) << 23);  // (k + 127) << 23, modulo 2^32
  vfloat scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
#endif
}

inline vdouble decay(vdouble y) { return vexp(y); }

// The first `count` values at src into a zero-filled vector.
template <typename V, typename S>
inline V load_lanes(const S* src, int64_t count) {
  V v{};
  std::memcpy(&v, src, static_cast<size_t>(count) * sizeof(S));
  return v;
}

template <typename V, typename S>
inline void store_lanes(S* dst, V v, int64_t count) {
  std::memcpy(dst, &v, static_cast<size_t>(count) * sizeof(S));
}

// load_lanes / store_lanes with a constant-size copy (one vector move) for whole vectors; the
// variable-size copy only for a row's tail.
template <typename V, typename S>
inline V load_part(const S* src, int64_t count) {
  if (count == static_cast<int64_t>(sizeof(V) / sizeof(S))) {
    V v;
    std::memcpy(&v, src, sizeof(V));
    return v;
  }
  return load_lanes<V>(src, count);
}

template <typename V, typename S>
inline void store_part(S* dst, V v, int64_t count) {
  if (count == static_cast<int64_t>(sizeof(V) / sizeof(S))) {
    std::memcpy(dst, &v, sizeof(V));
  } else {
    store_lanes(dst, v, count);
  }
}

// Row s of an input set (null for s < 0, a padding step).
template <typename S>
inline const S* infer_row(const ChannelsLastRows& r, int64_t b, int64_t k, int64_t s) {
  if (s < 0) return nullptr;
  return static_cast<const S*>(r.ptr) + b * r.stride_batch + k * r.stride_direction + s * r.stride_step;
}

// States [n0, n0 + NB) over the chunk's tn steps: h_n <- 2^(delta a_n) h_n + du B_n (a = A log2(e)) and
// yacc[i] (+)= sum_n C_n h_n (first block: =).
template <int NB, typename V, typename S>
inline void infer_state_block(V* h, const V* a, int64_t n0, int64_t tn, const V* dl, const V* du,
                              const S* const* brow, const S* const* crow, V* yacc, bool first) {
  V hk[NB], ak[NB];
  for (int k = 0; k < NB; ++k) hk[k] = h[n0 + k], ak[k] = a[n0 + k];
  for (int64_t i = 0; i < tn; ++i) {
    const V d = dl[i], x = du[i];
    const S* bi = brow[i] + n0;
    const S* ci = crow[i] + n0;
    V acc = first ? V{} : yacc[i];
#pragma GCC unroll 16
    for (int k = 0; k < NB; ++k) {
      hk[k] = decay(ak[k] * d) * hk[k] + x * bi[k];
      acc += ci[k] * hk[k];
    }
    yacc[i] = acc;
  }
  for (int k = 0; k < NB; ++k) h[n0 + k] = hk[k];
}

template <typename V, typename S>
inline void infer_states(V* h, const V* a, int64_t N, int64_t tn, const V* dl, const V* du, const S* const* brow,
                         const S* const* crow, V* yacc) {
  int64_t n0 = 0;
  for (; n0 + 8 <= N; n0 += 8) infer_state_block<8>(h, a, n0, tn, dl, du, brow, crow, yacc, n0 == 0);
  for (; n0 + 4 <= N; n0 += 4) infer_state_block<4>(h, a, n0, tn, dl, du, brow, crow, yacc, n0 == 0);
  for (; n0 < N; ++n0) infer_state_block<1>(h, a, n0, tn, dl, du, brow, crow, yacc, n0 == 0);
}

// One vector of channels [c0, c0 + cn) of direction k, batch b, over the whole sequence.
template <typename S>
void infer_channels(const DirectionalScanInferParams& p, int64_t b, int64_t k, int64_t c0, int64_t cn) {
  using V = typename VecOf<S>::type;
  const int64_t N = p.dstate, R = p.dt_rank, L = p.length, d0 = k * p.dim + c0;
  const int64_t* idx = p.index + k * L;
  V a[kSelectiveScanMaxDstate], h[kSelectiveScanMaxDstate], w[kDirectionalScanMaxDtRank];
  for (int64_t n = 0; n < N; ++n) {
    S col[sizeof(V) / sizeof(S)] = {};
    for (int64_t j = 0; j < cn; ++j)
      col[j] = static_cast<const S*>(p.A)[(d0 + j) * p.A_stride_dim + n * p.A_stride_state] * kDecayScale<S>;
    a[n] = load_lanes<V>(col, cn);
    h[n] = V{};
  }
  for (int64_t r = 0; r < R; ++r) {
    S col[sizeof(V) / sizeof(S)] = {};
    for (int64_t j = 0; j < cn; ++j)
      col[j] = static_cast<const S*>(p.dt_weight)[(d0 + j) * p.dt_weight_stride_dim + r * p.dt_weight_stride_rank];
    w[r] = load_lanes<V>(col, cn);
  }
  auto per_channel = [&](const void* base, int64_t stride, S fallback) {
    S col[sizeof(V) / sizeof(S)] = {};
    for (int64_t j = 0; j < cn; ++j) col[j] = base ? static_cast<const S*>(base)[(d0 + j) * stride] : fallback;
    return load_lanes<V>(col, cn);
  };
  const V bias = per_channel(p.delta_bias, p.delta_bias_stride, S(0));
  const V skip = per_channel(p.D, p.D_stride, S(0));
  const S w_k = p.weights ? static_cast<const S*>(p.weights)[k * p.weights_stride] : S(1);
  alignas(64) static const S zeros[kSelectiveScanMaxDstate] = {};

  V dl[kInferChunk], du[kInferChunk], uu[kInferChunk], zz[kInferChunk], zs[kInferChunk], yacc[kInferChunk];
  const S* brow[kInferChunk];
  const S* crow[kInferChunk];
  S* out = static_cast<S*>(p.out) + b * p.out_stride_batch + k * p.out_stride_direction + c0;
  for (int64_t t0 = 0; t0 < L; t0 += kInferChunk) {
    const int64_t tn = ss_min(kInferChunk, L - t0);
    for (int64_t i = 0; i < tn; ++i) {
      const int64_t tok = idx[t0 + i];
      auto step = [&](const ChannelsLastRows& r) { return r.by_token ? tok : t0 + i; };
      const S* ur = infer_row<S>(p.u, b, k, step(p.u));
      uu[i] = ur ? load_part<V>(ur + c0, cn) : V{};
      V d = bias;
      if (R > 0) {
        const S* dt = infer_row<S>(p.dt, b, k, step(p.dt));
        if (dt)
          for (int64_t r = 0; r < R; ++r) d += w[r] * dt[r];
      } else if (const S* dr = infer_row<S>(p.delta, b, k, step(p.delta))) {
        d += load_part<V>(dr + c0, cn);
      }
      dl[i] = d;
      const S* br = infer_row<S>(p.B, b, k, step(p.B));
      const S* cr = infer_row<S>(p.C, b, k, step(p.C));
      brow[i] = br ? br : zeros;
      crow[i] = cr ? cr : zeros;
      if (p.z.ptr) {
        const S* zr = infer_row<S>(p.z, b, k, step(p.z));
        zz[i] = zr ? load_part<V>(zr + c0, cn) : V{};
      }
    }
    constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
    if (p.delta_softplus) softplus_array(reinterpret_cast<S*>(dl), reinterpret_cast<S*>(dl), nullptr, tn * lanes);
    if (p.z.ptr) sigmoid_array(reinterpret_cast<const S*>(zz), reinterpret_cast<S*>(zs), tn * lanes);
    for (int64_t i = 0; i < tn; ++i) du[i] = dl[i] * uu[i];
    infer_states(h, a, N, tn, dl, du, brow, crow, yacc);
    for (int64_t i = 0; i < tn; ++i) {
      const int64_t tok = idx[t0 + i];
      if (tok < 0) continue;
      V y = yacc[i] + skip * uu[i];
      if (p.z.ptr) y *= zz[i] * zs[i];
      store_part(out + tok * p.out_stride_token, y * w_k, cn);
    }
  }
}

template <typename S>
void dir_infer_kernel(const DirectionalScanInferParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t blocks = (p.dim + kDirectionalScanInferBlock - 1) / kDirectionalScanInferBlock;
  parallel_for(directional_scan_infer_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t k = bk % p.num_directions, b = bk / p.num_directions;
      const int64_t c_end = ss_min(p.dim, (blk + 1) * kDirectionalScanInferBlock);
      for (int64_t c0 = blk * kDirectionalScanInferBlock; c0 < c_end; c0 += lanes)
        infer_channels<S>(p, b, k, c0, ss_min(lanes, c_end - c0));
    }
  });
}

void run_dir_infer(const DirectionalScanInferParams& p) {
  if (p.dtype == DType::kFloat64) {
    dir_infer_kernel<double>(p);
  } else {
    dir_infer_kernel<float>(p);
  }
}

}  // namespace
}  // namespace localmamba
