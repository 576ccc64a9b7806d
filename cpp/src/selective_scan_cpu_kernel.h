// Internal: the CPU selective-scan kernels, written once over GCC/Clang vector extensions
// and compiled once per SIMD level (see cpp/src/selective_scan_cpu_*.cpp). The including
// file defines LOCALMAMBA_SS_VECTOR_BYTES (16 = SSE2/NEON baseline, 32 = AVX2) before
// including it. Everything lives in an anonymous namespace, and no standard-library
// template is instantiated on vector types, so the ISA-specific copies can never be
// merged by the linker into code that runs on a CPU without that ISA.
#pragma once

#if !(defined(__GNUC__) || defined(__clang__))
#error "the CPU selective scan kernels need GCC or Clang vector extensions"
#endif
#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "define LOCALMAMBA_SS_VECTOR_BYTES before including selective_scan_cpu_kernel.h"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "localmamba/dtype.h"
#include "localmamba/parallel.h"
#include "localmamba/selective_scan.h"

namespace localmamba {
namespace {

typedef float vfloat __attribute__((vector_size(LOCALMAMBA_SS_VECTOR_BYTES), aligned(LOCALMAMBA_SS_VECTOR_BYTES)));
typedef int32_t vint __attribute__((vector_size(LOCALMAMBA_SS_VECTOR_BYTES), aligned(LOCALMAMBA_SS_VECTOR_BYTES)));
typedef double vdouble __attribute__((vector_size(LOCALMAMBA_SS_VECTOR_BYTES), aligned(LOCALMAMBA_SS_VECTOR_BYTES)));

template <typename S> struct VecOf;
template <> struct VecOf<float> {
  using type = vfloat;
};
template <> struct VecOf<double> {
  using type = vdouble;
};

inline int64_t ss_min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ss_max(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// exp over a float vector: round-to-nearest k = x log2(e) via the 1.5 * 2^23 trick,
// Cody-Waite reduction to r in [-ln2/2, ln2/2], degree-6 polynomial, scale by 2^k through
// the exponent bits. Inputs are clamped to [-87.3, 88]; max error ~2 ulp.
inline vfloat vexp(vfloat x) {
  const vfloat lo = vfloat{} - 87.3f, hi = vfloat{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const vfloat t = x * 1.44269504088896341f + magic;
  const vfloat kf = t - magic;
  vint tk;
  std::memcpy(&tk, &t, sizeof(tk));
  const vint k = tk - 0x4b400000;  // bits of the magic number
  const vfloat r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
  vfloat p = vfloat{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vint bits = (k + 127) << 23;
  vfloat scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// float64 is the checking path: exact libm exp per lane.
inline vdouble vexp(vdouble x) {
  vdouble r;
  for (int i = 0; i < static_cast<int>(sizeof(vdouble) / sizeof(double)); ++i) r[i] = std::exp(x[i]);
  return r;
}

// Horizontal sums in a fixed lane order (deterministic).
inline float hsum(vfloat v) {
  float s = v[0];
  for (int i = 1; i < static_cast<int>(sizeof(vfloat) / sizeof(float)); ++i) s += v[i];
  return s;
}
inline double hsum(vdouble v) {
  double s = v[0];
  for (int i = 1; i < static_cast<int>(sizeof(vdouble) / sizeof(double)); ++i) s += v[i];
  return s;
}

// log over a float vector (x > 0): exponent/mantissa split, Cephes-style polynomial.
inline vfloat vlog(vfloat x) {
  vint bits;
  std::memcpy(&bits, &x, sizeof(bits));
  vint e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  vfloat m;
  std::memcpy(&m, &bits, sizeof(m));
  const vint small = m < 0.707106781186547524f;
  e = e + small;
  const vfloat m_small = small ? m : vfloat{};
  m = m - 1.0f + m_small;
  const vfloat z = m * m;
  vfloat y = vfloat{} + 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const vfloat ef = __builtin_convertvector(e, vfloat);
  y = y + ef * -2.12194440e-4f - 0.5f * z;
  return m + y + ef * 0.693359375f;
}

// Element-wise helpers over chunk arrays padded to whole vectors (n rounded up to lanes).
// softplus(x) = x for x > 20, else log1p(exp(x)); optionally also its derivative sigmoid(x).
inline void softplus_array(const float* x, float* y, float* dy, int64_t n) {
  constexpr int64_t lanes = sizeof(vfloat) / sizeof(float);
  for (int64_t i = 0; i < n; i += lanes) {
    vfloat v;
    std::memcpy(&v, x + i, sizeof(v));
    const vfloat e = vexp(v);
    const vfloat w = e + 1.0f;
    const vfloat wm1 = w - 1.0f;
    const vint exact = wm1 == 0.0f;
    const vfloat lp = exact ? e : vlog(w) * (e / (exact ? vfloat{} + 1.0f : wm1));  // accurate log1p
    const vfloat r = v > 20.0f ? v : lp;
    std::memcpy(y + i, &r, sizeof(r));
    if (dy) {
      const vfloat sg = v > 20.0f ? vfloat{} + 1.0f : e / w;
      std::memcpy(dy + i, &sg, sizeof(sg));
    }
  }
}
inline void softplus_array(const double* x, double* y, double* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = v > 20.0 ? v : std::log1p(std::exp(v));
    if (dy) dy[i] = v > 20.0 ? 1.0 : 1.0 / (1.0 + std::exp(-v));
  }
}
inline void sigmoid_array(const float* x, float* y, int64_t n) {
  constexpr int64_t lanes = sizeof(vfloat) / sizeof(float);
  for (int64_t i = 0; i < n; i += lanes) {
    vfloat v;
    std::memcpy(&v, x + i, sizeof(v));
    const vfloat r = 1.0f / (vexp(-v) + 1.0f);
    std::memcpy(y + i, &r, sizeof(r));
  }
}
inline void sigmoid_array(const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0 / (1.0 + std::exp(-x[i]));
}

// Aligned scratch owned by one parallel block.
struct Scratch {
  void* ptr = nullptr;
  explicit Scratch(size_t bytes) : ptr(::operator new(bytes == 0 ? 64 : bytes, std::align_val_t(64))) {}
  ~Scratch() { ::operator delete(ptr, std::align_val_t(64)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Bump allocator over one Scratch block (64-byte aligned pieces).
struct Arena {
  char* base;
  size_t used = 0;
  template <typename X>
  X* take(int64_t count) {
    X* p = reinterpret_cast<X*>(base + used);
    used += static_cast<size_t>(round_up(count * static_cast<int64_t>(sizeof(X)), 64));
    return p;
  }
};
template <typename X>
size_t arena_bytes(int64_t count) {
  return static_cast<size_t>(round_up(count * static_cast<int64_t>(sizeof(X)), 64));
}

template <typename T, typename S>
inline S load_as(const void* base, int64_t index) {
  return static_cast<S>(ScalarTraits<T>::load(static_cast<const T*>(base)[index]));
}

// B/C element type is dtype or float32: a runtime switch outside the hot loops.
template <typename T, typename S>
void load_bc_transposed(const void* base, DType bc_dtype, int64_t stride_state, int64_t dstate, int64_t length,
                        int64_t npad, S* dst) {
  for (int64_t n = 0; n < dstate; ++n) {
    const int64_t row = n * stride_state;
    if (bc_dtype == DType::kFloat32) {
      const float* src = static_cast<const float*>(base) + row;
      for (int64_t t = 0; t < length; ++t) dst[t * npad + n] = static_cast<S>(src[t]);
    } else {
      const T* src = static_cast<const T*>(base) + row;
      for (int64_t t = 0; t < length; ++t) dst[t * npad + n] = static_cast<S>(ScalarTraits<T>::load(src[t]));
    }
  }
  for (int64_t n = dstate; n < npad; ++n)
    for (int64_t t = 0; t < length; ++t) dst[t * npad + n] = S(0);
}

template <typename T, typename S>
void store_bc(void* base, DType bc_dtype, int64_t index, S value) {
  if (bc_dtype == DType::kFloat32) {
    static_cast<float*>(base)[index] = static_cast<float>(value);
  } else {
    static_cast<T*>(base)[index] = ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(value));
  }
}

// Work is split into units (b, g, segment of the group's channels). The split depends only
// on the shapes, so per-unit partial sums -- and the fixed-order reductions over them --
// never depend on the thread count.
struct Units {
  int64_t channels_per_group, segments, channels_per_segment, count;
};
inline Units make_units(const SelectiveScanParams& p) {
  Units u;
  u.channels_per_group = p.dim / p.n_groups;
  const int64_t bg = ss_max(1, p.batch * p.n_groups);
  const int64_t want = ss_max(1, ss_min(u.channels_per_group, (64 + bg - 1) / bg));
  u.channels_per_segment = (u.channels_per_group + want - 1) / want;
  u.segments = (u.channels_per_group + u.channels_per_segment - 1) / u.channels_per_segment;
  u.count = p.batch * p.n_groups * u.segments;
  return u;
}

// The inner loops, over JB state vectors at once (independent recurrences in flight, the
// per-time-step sums kept in registers). `nv` is the row stride of the (t, n) arrays.

// Forward: h <- exp(delta A) h + delta u B; yacc[i] (+)= sum_k C h.
template <int JB, typename V, typename S>
inline void fwd_block(V* h, const V* a_v, const V* bt, const V* ct, int64_t nv, int64_t tn, const S* dlt,
                      const S* dlu, V* yacc, bool first) {
  V hk[JB], ak[JB];
  for (int k = 0; k < JB; ++k) hk[k] = h[k], ak[k] = a_v[k];
  for (int64_t i = 0; i < tn; ++i) {
    const S dl = dlt[i], du = dlu[i];
    V acc = first ? V{} : yacc[i];
    for (int k = 0; k < JB; ++k) {
      const V da = vexp(ak[k] * dl);
      hk[k] = da * hk[k] + du * bt[i * nv + k];
      acc += ct[i * nv + k] * hk[k];
    }
    yacc[i] = acc;
  }
  for (int k = 0; k < JB; ++k) h[k] = hk[k];
}

// Backward recompute: states hs[i + 1] and decays das[i] of one chunk from hs[0].
template <int JB, typename V, typename S>
inline void recompute_block(V* hs, V* das, const V* a_v, const V* bt, int64_t nv, int64_t tn, const S* dlt,
                            const S* dlu) {
  V hk[JB], ak[JB];
  for (int k = 0; k < JB; ++k) hk[k] = hs[k], ak[k] = a_v[k];
  for (int64_t i = 0; i < tn; ++i) {
    const S dl = dlt[i], du = dlu[i];
    for (int k = 0; k < JB; ++k) {
      const V da = vexp(ak[k] * dl);
      das[i * nv + k] = da;
      hk[k] = da * hk[k] + du * bt[i * nv + k];
      hs[(i + 1) * nv + k] = hk[k];
    }
  }
}

// Backward reverse-time adjoint over one chunk.
template <int JB, typename V, typename S>
inline void adjoint_block(V* q, V* dA_acc, const V* a_v, const V* hs, const V* das, const V* bt, const V* ct,
                          V* dbt, V* dct, int64_t nv, int64_t tn, const S* dlt, const S* dlu, const S* dy, V* vdu,
                          V* vdd, V* yacc, bool first, bool want_y) {
  V qk[JB], dak[JB], ak[JB];
  for (int k = 0; k < JB; ++k) qk[k] = q[k], dak[k] = dA_acc[k], ak[k] = a_v[k];
  for (int64_t i = tn - 1; i >= 0; --i) {
    const S dyi = dy[i], dli = dlt[i], dui = dlu[i];
    V s_du = first ? V{} : vdu[i];
    V s_dd = first ? V{} : vdd[i];
    V s_y = first ? V{} : yacc[i];
    for (int k = 0; k < JB; ++k) {
      const int64_t o = i * nv + k;
      const V ht = hs[o + nv];
      const V da = das[o];
      const V cv = ct[o];
      const V gk = qk[k] + cv * dyi;
      dct[o] += dyi * ht;
      dbt[o] += gk * dui;
      if (want_y) s_y += cv * ht;
      s_du += gk * bt[o];
      const V w = gk * hs[o] * da;
      s_dd += ak[k] * w;
      dak[k] += dli * w;
      qk[k] = da * gk;
    }
    vdu[i] = s_du;
    vdd[i] = s_dd;
    if (want_y) yacc[i] = s_y;
  }
  for (int k = 0; k < JB; ++k) q[k] = qk[k], dA_acc[k] = dak[k];
}

// Calls fn(integral_constant<JB>, j0) over [0, nv) in blocks of at most 4 vectors.
template <typename Fn>
inline void for_blocks(int64_t nv, Fn&& fn) {
  int64_t j0 = 0;
  for (; j0 + 4 <= nv; j0 += 4) fn(std::integral_constant<int, 4>{}, j0);
  switch (nv - j0) {
    case 3: fn(std::integral_constant<int, 3>{}, j0); break;
    case 2: fn(std::integral_constant<int, 2>{}, j0); break;
    case 1: fn(std::integral_constant<int, 1>{}, j0); break;
    default: break;
  }
}

template <typename T, typename S>
void fwd_kernel(const SelectiveScanParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t kLanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, T_chunk = p.chunk_size;
  const int64_t npad = round_up(N, kLanes), nv = npad / kLanes;
  const int64_t num_chunks = selective_scan_num_chunks(L, T_chunk);
  const Units units = make_units(p);
  const S* A = static_cast<const S*>(p.A);
  const S* Dp = static_cast<const S*>(p.D);
  const S* bias = static_cast<const S*>(p.delta_bias);
  const S* h0 = static_cast<const S*>(p.initial_state);
  S* last = static_cast<S*>(p.last_state);
  S* saved = static_cast<S*>(p.chunk_states);

  const int64_t T_pad = round_up(T_chunk, kLanes);
  const size_t bytes = 2 * arena_bytes<S>(L * npad) + 3 * arena_bytes<V>(nv) + arena_bytes<V>(T_pad) +
                       5 * arena_bytes<S>(T_pad);
  parallel_for(units.count, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(bytes);
    Arena arena{static_cast<char*>(scratch.ptr)};
    S* Bt = arena.take<S>(L * npad);
    S* Ct = arena.take<S>(L * npad);
    V* a_v = arena.take<V>(nv);
    V* h = arena.take<V>(nv);
    V* tmp = arena.take<V>(nv);
    V* yacc = arena.take<V>(T_pad);
    S* dlt = arena.take<S>(T_pad);
    S* dlu = arena.take<S>(T_pad);
    S* uu = arena.take<S>(T_pad);
    S* zz = arena.take<S>(T_pad);
    S* zs = arena.take<S>(T_pad);  // sigmoid(z)
    const V* Btv = reinterpret_cast<const V*>(Bt);
    const V* Ctv = reinterpret_cast<const V*>(Ct);
    S* a_s = reinterpret_cast<S*>(a_v);
    S* h_s = reinterpret_cast<S*>(h);
    (void)tmp;

    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t s = unit % units.segments, g = (unit / units.segments) % p.n_groups,
                    b = unit / (units.segments * p.n_groups);
      load_bc_transposed<T, S>(static_cast<const char*>(p.B) +
                                   (b * p.B_stride_batch + g * p.B_stride_group) * element_size(p.bc_dtype),
                               p.bc_dtype, p.B_stride_state, N, L, npad, Bt);
      load_bc_transposed<T, S>(static_cast<const char*>(p.C) +
                                   (b * p.C_stride_batch + g * p.C_stride_group) * element_size(p.bc_dtype),
                               p.bc_dtype, p.C_stride_state, N, L, npad, Ct);
      const int64_t d_begin = g * units.channels_per_group + s * units.channels_per_segment;
      const int64_t d_end = ss_min(d_begin + units.channels_per_segment, (g + 1) * units.channels_per_group);
      for (int64_t d = d_begin; d < d_end; ++d) {
        for (int64_t n = 0; n < npad; ++n) {
          a_s[n] = n < N ? A[d * p.A_stride_dim + n * p.A_stride_state] : S(0);
          h_s[n] = (n < N && h0) ? h0[b * p.initial_state_stride_batch + d * p.initial_state_stride_dim +
                                      n * p.initial_state_stride_state]
                                 : S(0);
        }
        const int64_t u_off = b * p.u_stride_batch + d * p.u_stride_dim;
        const int64_t dl_off = b * p.delta_stride_batch + d * p.delta_stride_dim;
        const int64_t z_off = b * p.z_stride_batch + d * p.z_stride_dim;
        T* out = static_cast<T*>(p.out) + b * p.out_stride_batch + d * p.out_stride_dim;
        const S bias_d = bias ? bias[d * p.delta_bias_stride] : S(0);
        const S skip_d = Dp ? Dp[d * p.D_stride] : S(0);
        for (int64_t c = 0; c < num_chunks; ++c) {
          const int64_t t0 = c * T_chunk, tn = ss_min(T_chunk, L - t0);
          if (saved) {
            S* dst = saved + ((b * p.dim + d) * num_chunks + c) * N;
            for (int64_t n = 0; n < N; ++n) dst[n] = h_s[n];
          }
          const int64_t tv = round_up(tn, kLanes);
          for (int64_t i = 0; i < tv; ++i) {
            const bool in = i < tn;
            dlt[i] = in ? load_as<T, S>(p.delta, dl_off + t0 + i) + bias_d : S(0);
            uu[i] = in ? load_as<T, S>(p.u, u_off + t0 + i) : S(0);
            if (p.z) zz[i] = in ? load_as<T, S>(p.z, z_off + t0 + i) : S(0);
            yacc[i] = V{};
          }
          if (p.delta_softplus) softplus_array(dlt, dlt, nullptr, tv);
          if (p.z) sigmoid_array(zz, zs, tv);
          for (int64_t i = 0; i < tv; ++i) dlu[i] = dlt[i] * uu[i];
          for_blocks(nv, [&](auto jb, int64_t j0) {
            fwd_block<decltype(jb)::value>(h + j0, a_v + j0, Btv + t0 * nv + j0, Ctv + t0 * nv + j0, nv, tn, dlt,
                                           dlu, yacc, j0 == 0);
          });
          for (int64_t i = 0; i < tn; ++i) {
            S y = hsum(yacc[i]) + skip_d * uu[i];
            if (p.z) y *= zz[i] * zs[i];
            out[t0 + i] = ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(y));
          }
        }
        if (last) {
          for (int64_t n = 0; n < N; ++n)
            last[b * p.last_state_stride_batch + d * p.last_state_stride_dim + n * p.last_state_stride_state] = h_s[n];
        }
      }
    }
  });
}

template <typename T, typename S>
void bwd_kernel(const SelectiveScanParams& p, const SelectiveScanGrads& gr) {
  using V = typename VecOf<S>::type;
  constexpr int64_t kLanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, T_chunk = p.chunk_size;
  const int64_t npad = round_up(N, kLanes), nv = npad / kLanes;
  const int64_t num_chunks = selective_scan_num_chunks(L, T_chunk);
  const Units units = make_units(p);
  const S* A = static_cast<const S*>(p.A);
  const S* Dp = static_cast<const S*>(p.D);
  const S* bias = static_cast<const S*>(p.delta_bias);
  const S* saved = static_cast<const S*>(p.chunk_states);
  const S* dlast = static_cast<const S*>(gr.dlast_state);

  // Per-unit partial sums of dB and dC ((t, n) layout), per-(b, d) partials of dA, dD and
  // ddelta_bias; reduced below in a fixed order.
  const int64_t part_stride = L * npad;
  Scratch dbc_part(static_cast<size_t>(2 * units.count * part_stride) * sizeof(S));
  S* dB_part = static_cast<S*>(dbc_part.ptr);
  S* dC_part = dB_part + units.count * part_stride;
  Scratch small_part(static_cast<size_t>(p.batch * p.dim * (npad + 2)) * sizeof(S));
  S* dA_part = static_cast<S*>(small_part.ptr);
  S* dD_part = dA_part + p.batch * p.dim * npad;
  S* dbias_part = dD_part + p.batch * p.dim;

  const int64_t T_pad = round_up(T_chunk, kLanes);
  const size_t bytes = 2 * arena_bytes<S>(L * npad) + 4 * arena_bytes<V>(nv) + arena_bytes<V>((T_chunk + 1) * nv) +
                       arena_bytes<V>(T_chunk * nv) + 3 * arena_bytes<V>(T_pad) + 7 * arena_bytes<S>(T_pad);
  parallel_for(units.count, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(bytes);
    Arena arena{static_cast<char*>(scratch.ptr)};
    S* Bt = arena.take<S>(L * npad);
    S* Ct = arena.take<S>(L * npad);
    V* a_v = arena.take<V>(nv);
    V* q = arena.take<V>(nv);
    V* dA_acc = arena.take<V>(nv);
    V* tmp = arena.take<V>(nv);
    V* hs = arena.take<V>((T_chunk + 1) * nv);
    V* das = arena.take<V>(T_chunk * nv);
    V* vdu = arena.take<V>(T_pad);
    V* vdd = arena.take<V>(T_pad);
    V* yacc = arena.take<V>(T_pad);
    S* dlt = arena.take<S>(T_pad);
    S* dlu = arena.take<S>(T_pad);
    S* uu = arena.take<S>(T_pad);
    S* zz = arena.take<S>(T_pad);
    S* dy = arena.take<S>(T_pad);    // gradient reaching sum_n C h + D u
    S* dsp = arena.take<S>(T_pad);   // d softplus / d raw delta
    S* gate = arena.take<S>(T_pad);  // dout * dsilu(z)
    const V* Btv = reinterpret_cast<const V*>(Bt);
    const V* Ctv = reinterpret_cast<const V*>(Ct);
    S* a_s = reinterpret_cast<S*>(a_v);
    S* q_s = reinterpret_cast<S*>(q);
    S* dA_s = reinterpret_cast<S*>(dA_acc);
    S* tmp_s = reinterpret_cast<S*>(tmp);

    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t s = unit % units.segments, g = (unit / units.segments) % p.n_groups,
                    b = unit / (units.segments * p.n_groups);
      load_bc_transposed<T, S>(static_cast<const char*>(p.B) +
                                   (b * p.B_stride_batch + g * p.B_stride_group) * element_size(p.bc_dtype),
                               p.bc_dtype, p.B_stride_state, N, L, npad, Bt);
      load_bc_transposed<T, S>(static_cast<const char*>(p.C) +
                                   (b * p.C_stride_batch + g * p.C_stride_group) * element_size(p.bc_dtype),
                               p.bc_dtype, p.C_stride_state, N, L, npad, Ct);
      V* dBv = reinterpret_cast<V*>(dB_part + unit * part_stride);
      V* dCv = reinterpret_cast<V*>(dC_part + unit * part_stride);
      for (int64_t k = 0; k < L * nv; ++k) dBv[k] = dCv[k] = V{};

      const int64_t d_begin = g * units.channels_per_group + s * units.channels_per_segment;
      const int64_t d_end = ss_min(d_begin + units.channels_per_segment, (g + 1) * units.channels_per_group);
      for (int64_t d = d_begin; d < d_end; ++d) {
        for (int64_t n = 0; n < npad; ++n) {
          a_s[n] = n < N ? A[d * p.A_stride_dim + n * p.A_stride_state] : S(0);
          q_s[n] = (n < N && dlast) ? dlast[b * gr.dlast_state_stride_batch + d * gr.dlast_state_stride_dim +
                                           n * gr.dlast_state_stride_state]
                                    : S(0);
          dA_s[n] = S(0);
        }
        const int64_t u_off = b * p.u_stride_batch + d * p.u_stride_dim;
        const int64_t dl_off = b * p.delta_stride_batch + d * p.delta_stride_dim;
        const int64_t z_off = b * p.z_stride_batch + d * p.z_stride_dim;
        const int64_t dout_off = b * gr.dout_stride_batch + d * gr.dout_stride_dim;
        const S bias_d = bias ? bias[d * p.delta_bias_stride] : S(0);
        const S skip_d = Dp ? Dp[d * p.D_stride] : S(0);
        S dD_acc = 0, dbias_acc = 0;
        for (int64_t c = num_chunks - 1; c >= 0; --c) {
          const int64_t t0 = c * T_chunk, tn = ss_min(T_chunk, L - t0);
          const int64_t tv = round_up(tn, kLanes);
          for (int64_t i = 0; i < tv; ++i) {
            const bool in = i < tn;
            dlt[i] = in ? load_as<T, S>(p.delta, dl_off + t0 + i) + bias_d : S(0);
            dsp[i] = S(1);
            uu[i] = in ? load_as<T, S>(p.u, u_off + t0 + i) : S(0);
            dy[i] = in ? load_as<T, S>(gr.dout, dout_off + t0 + i) : S(0);
            if (p.z) zz[i] = in ? load_as<T, S>(p.z, z_off + t0 + i) : S(0);
            vdu[i] = vdd[i] = yacc[i] = V{};
          }
          if (p.delta_softplus) softplus_array(dlt, dlt, dsp, tv);
          if (p.z) sigmoid_array(zz, gate, tv);
          for (int64_t i = 0; i < tv; ++i) {
            dlu[i] = dlt[i] * uu[i];
            if (p.z) {
              const S go = dy[i], zi = zz[i], sg = gate[i];
              dy[i] = go * zi * sg;
              gate[i] = go * sg * (S(1) + zi * (S(1) - sg));
            }
          }
          // Recompute the states of this chunk from its saved starting state.
          const S* start = saved + ((b * p.dim + d) * num_chunks + c) * N;
          for (int64_t n = 0; n < npad; ++n) tmp_s[n] = n < N ? start[n] : S(0);
          for (int64_t j = 0; j < nv; ++j) hs[j] = tmp[j];
          for_blocks(nv, [&](auto jb, int64_t j0) {
            recompute_block<decltype(jb)::value>(hs + j0, das + j0, a_v + j0, Btv + t0 * nv + j0, nv, tn, dlt, dlu);
          });
          // Reverse-time adjoint: g_t = dA_{t+1} g_{t+1} + C_t dy_t, carried as q = dA_t g_t.
          for_blocks(nv, [&](auto jb, int64_t j0) {
            adjoint_block<decltype(jb)::value>(q + j0, dA_acc + j0, a_v + j0, hs + j0, das + j0, Btv + t0 * nv + j0,
                                               Ctv + t0 * nv + j0, dBv + t0 * nv + j0, dCv + t0 * nv + j0, nv, tn,
                                               dlt, dlu, dy, vdu, vdd, yacc, j0 == 0, p.z != nullptr);
          });
          for (int64_t i = 0; i < tn; ++i) {
            const S gb = hsum(vdu[i]);
            const S du_t = dlt[i] * gb + skip_d * dy[i];
            S dd_t = (hsum(vdd[i]) + uu[i] * gb) * dsp[i];
            dD_acc += dy[i] * uu[i];
            dbias_acc += dd_t;
            const int64_t t = t0 + i;
            if (gr.du)
              static_cast<T*>(gr.du)[b * gr.du_stride_batch + d * gr.du_stride_dim + t] =
                  ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(du_t));
            if (gr.ddelta)
              static_cast<T*>(gr.ddelta)[b * gr.ddelta_stride_batch + d * gr.ddelta_stride_dim + t] =
                  ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(dd_t));
            if (p.z && gr.dz) {
              const S y = hsum(yacc[i]) + skip_d * uu[i];
              static_cast<T*>(gr.dz)[b * gr.dz_stride_batch + d * gr.dz_stride_dim + t] =
                  ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(y * gate[i]));
            }
          }
        }
        if (gr.dinitial_state) {
          S* dst = static_cast<S*>(gr.dinitial_state);
          for (int64_t n = 0; n < N; ++n)
            dst[b * gr.dinitial_state_stride_batch + d * gr.dinitial_state_stride_dim +
                n * gr.dinitial_state_stride_state] = q_s[n];
        }
        for (int64_t n = 0; n < npad; ++n) dA_part[(b * p.dim + d) * npad + n] = dA_s[n];
        dD_part[b * p.dim + d] = dD_acc;
        dbias_part[b * p.dim + d] = dbias_acc;
      }
    }
  });

  // Fixed-order reductions.
  if (gr.dB || gr.dC) {
    parallel_for(p.batch * p.n_groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bg = begin; bg < end; ++bg) {
        const int64_t b = bg / p.n_groups, g = bg % p.n_groups;
        const int64_t first_unit = bg * units.segments;
        for (int which = 0; which < 2; ++which) {
          void* dst = which == 0 ? gr.dB : gr.dC;
          if (!dst) continue;
          const S* part = (which == 0 ? dB_part : dC_part) + first_unit * part_stride;
          const int64_t sb = which == 0 ? gr.dB_stride_batch : gr.dC_stride_batch;
          const int64_t sg = which == 0 ? gr.dB_stride_group : gr.dC_stride_group;
          const int64_t sn = which == 0 ? gr.dB_stride_state : gr.dC_stride_state;
          for (int64_t n = 0; n < N; ++n) {
            const int64_t row = b * sb + g * sg + n * sn;
            for (int64_t t = 0; t < L; ++t) {
              S acc = part[t * npad + n];
              for (int64_t k = 1; k < units.segments; ++k) acc += part[k * part_stride + t * npad + n];
              store_bc<T, S>(dst, p.bc_dtype, row + t, acc);
            }
          }
        }
      }
    });
  }
  for (int64_t d = 0; d < p.dim; ++d) {
    for (int64_t n = 0; n < N; ++n) {
      S acc = 0;
      for (int64_t b = 0; b < p.batch; ++b) acc += dA_part[(b * p.dim + d) * npad + n];
      if (gr.dA) static_cast<S*>(gr.dA)[d * gr.dA_stride_dim + n * gr.dA_stride_state] = acc;
    }
    S dD = 0, dbias = 0;
    for (int64_t b = 0; b < p.batch; ++b) {
      dD += dD_part[b * p.dim + d];
      dbias += dbias_part[b * p.dim + d];
    }
    if (gr.dD) static_cast<S*>(gr.dD)[d * gr.dD_stride] = dD;
    if (gr.ddelta_bias) static_cast<S*>(gr.ddelta_bias)[d * gr.ddelta_bias_stride] = dbias;
  }
}

template <typename Fn>
void dispatch_types(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}, float{}); break;
    case DType::kFloat64: fn(double{}, double{}); break;
    case DType::kFloat16: fn(Half{}, float{}); break;
    case DType::kBFloat16: fn(BFloat16{}, float{}); break;
    default: throw std::invalid_argument(std::string("selective_scan: unsupported dtype ") + dtype_name(dtype));
  }
}

void run_fwd(const SelectiveScanParams& p) {
  dispatch_types(p.dtype, [&](auto t, auto s) { fwd_kernel<decltype(t), decltype(s)>(p); });
}

void run_bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  dispatch_types(p.dtype, [&](auto t, auto s) { bwd_kernel<decltype(t), decltype(s)>(p, g); });
}

}  // namespace
}  // namespace localmamba
