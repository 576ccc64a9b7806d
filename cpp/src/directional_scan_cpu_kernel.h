// Internal: the CPU directional selective scan kernels (contract: directional_scan.h). Included
// by the per-ISA translation units right after selective_scan_cpu_kernel.h, whose vector
// helpers and inner loops (fwd_block / recompute_block / adjoint_block) it reuses: the
// recurrence is the selective scan's, only the loads go through the index maps and the
// stores scatter back to token order.
//
// Work units are (batch, segment of the per-direction channels); a unit runs every direction
// of its channels, so a shared u's gradient and a reduce_sum output are accumulated over the
// directions inside one unit, in direction order. dB, dC, ddt are per-(unit, direction)
// partials in sequence order, summed over the segments in a fixed order and scattered to
// token order at the end. The split depends only on the shapes: results never depend on the
// thread count.
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/directional_scan.h"

namespace localmamba {
namespace {

// Rows [0, rows) of a (rows, in_length) block (row stride `stride_row`, unit stride along the
// row) gathered through `idx` (null = identity) into dst[t * pitch + r], t < length; rows
// [rows, pitch) and padding steps are zero. `type` is float32 or T.
template <typename T, typename S>
void gather_rows_transposed(const void* base, DType type, int64_t stride_row, int64_t rows, int64_t length,
                            int64_t pitch, const int64_t* idx, S* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    if (type == DType::kFloat32) {
      const float* src = static_cast<const float*>(base) + r * stride_row;
      for (int64_t t = 0; t < length; ++t) {
        const int64_t pos = idx ? idx[t] : t;
        dst[t * pitch + r] = pos >= 0 ? static_cast<S>(src[pos]) : S(0);
      }
    } else {
      const T* src = static_cast<const T*>(base) + r * stride_row;
      for (int64_t t = 0; t < length; ++t) {
        const int64_t pos = idx ? idx[t] : t;
        dst[t * pitch + r] = pos >= 0 ? static_cast<S>(ScalarTraits<T>::load(src[pos])) : S(0);
      }
    }
  }
  for (int64_t r = rows; r < pitch; ++r)
    for (int64_t t = 0; t < length; ++t) dst[t * pitch + r] = S(0);
}

// Rows [0, rows) gathered through `idx` (null = identity) into dst[r * length + t]; padding
// steps are zero. Row-major so the in-kernel dt projection is a vectorisable axpy per rank.
template <typename T, typename S>
void gather_rows(const void* base, DType type, int64_t stride_row, int64_t rows, int64_t length, const int64_t* idx,
                 S* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    S* out = dst + r * length;
    if (type == DType::kFloat32) {
      const float* src = static_cast<const float*>(base) + r * stride_row;
      for (int64_t t = 0; t < length; ++t) {
        const int64_t pos = idx ? idx[t] : t;
        out[t] = pos >= 0 ? static_cast<S>(src[pos]) : S(0);
      }
    } else {
      const T* src = static_cast<const T*>(base) + r * stride_row;
      for (int64_t t = 0; t < length; ++t) {
        const int64_t pos = idx ? idx[t] : t;
        out[t] = pos >= 0 ? static_cast<S>(ScalarTraits<T>::load(src[pos])) : S(0);
      }
    }
  }
}

// dlt[i] = bias + sum_r w[r] * dt[r, t0 + i] for i < tn (0 for tn <= i < tv): the delta
// projection as R vectorisable axpys over the chunk.
template <typename S>
inline void project_delta(const S* DTt, int64_t L, int64_t t0, int64_t tn, int64_t tv, const S* w, int64_t R, S bias,
                          S* dlt) {
  for (int64_t i = 0; i < tn; ++i) dlt[i] = bias;
  for (int64_t i = tn; i < tv; ++i) dlt[i] = S(0);
  for (int64_t r = 0; r < R; ++r) {
    const S* row = DTt + r * L + t0;
    const S wr = w[r];
    for (int64_t i = 0; i < tn; ++i) dlt[i] += wr * row[i];
  }
}

// sum_i x[i] * y[i] over whole vectors (unaligned loads) then the tail; fixed order.
template <typename S>
inline S dot_unaligned(const S* x, const S* y, int64_t n) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  V acc{};
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    V a, b;
    std::memcpy(&a, x + i, sizeof(V));
    std::memcpy(&b, y + i, sizeof(V));
    acc += a * b;
  }
  S s = hsum(acc);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

struct DirUnits {
  int64_t segments, channels_per_segment, count;
};
inline DirUnits make_dir_units(const DirectionalScanParams& p) {
  constexpr int64_t kTargetUnits = 8;  // parallel work; the dB / dC / ddt partials grow with it
  DirUnits u;
  const int64_t want = ss_max(1, ss_min(p.dim, (kTargetUnits + p.batch - 1) / ss_max(1, p.batch)));
  u.channels_per_segment = (p.dim + want - 1) / want;
  u.segments = (p.dim + u.channels_per_segment - 1) / u.channels_per_segment;
  u.count = p.batch * u.segments;
  return u;
}

template <typename T, typename S>
inline void store_t(void* base, int64_t index, S value) {
  static_cast<T*>(base)[index] = ScalarTraits<T>::store(static_cast<typename ScalarTraits<T>::compute>(value));
}

template <typename T, typename S>
void dir_fwd_kernel(const DirectionalScanParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t kLanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, Tc = p.chunk_size, K = p.num_directions, R = p.dt_rank;
  const int64_t NT = p.num_tokens, Din = p.dim;
  const int64_t npad = round_up(N, kLanes), nv = npad / kLanes;
  const int64_t num_chunks = directional_scan_num_chunks(p);
  const DirUnits units = make_dir_units(p);
  const S* A = static_cast<const S*>(p.A);
  const S* Dp = static_cast<const S*>(p.D);
  const S* bias = static_cast<const S*>(p.delta_bias);
  const S* wdt_all = static_cast<const S*>(p.dt_weight);
  const S* weights = static_cast<const S*>(p.weights);
  S* saved = static_cast<S*>(p.chunk_states);
  const int64_t bc_elem = element_size(p.bc_dtype), t_elem = element_size(p.dtype);

  const int64_t T_pad = round_up(Tc, kLanes);
  const int64_t acc_n = p.reduce_sum ? units.channels_per_segment * NT : 0;
  const size_t bytes = 2 * arena_bytes<S>(L * npad) + arena_bytes<S>(L * R) + 2 * arena_bytes<V>(nv) +
                       arena_bytes<V>(T_pad) + 5 * arena_bytes<S>(T_pad) + arena_bytes<S>(R) + arena_bytes<S>(acc_n);
  parallel_for(units.count, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(bytes);
    Arena arena{static_cast<char*>(scratch.ptr)};
    S* Bt = arena.take<S>(L * npad);
    S* Ct = arena.take<S>(L * npad);
    S* DTt = arena.take<S>(L * R);
    V* a_v = arena.take<V>(nv);
    V* h = arena.take<V>(nv);
    V* yacc = arena.take<V>(T_pad);
    S* dlt = arena.take<S>(T_pad);
    S* dlu = arena.take<S>(T_pad);
    S* uu = arena.take<S>(T_pad);
    S* zz = arena.take<S>(T_pad);
    S* zs = arena.take<S>(T_pad);
    S* wdt = arena.take<S>(R);
    S* acc = arena.take<S>(acc_n);
    const V* Btv = reinterpret_cast<const V*>(Bt);
    const V* Ctv = reinterpret_cast<const V*>(Ct);
    S* a_s = reinterpret_cast<S*>(a_v);
    S* h_s = reinterpret_cast<S*>(h);

    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t s = unit % units.segments, b = unit / units.segments;
      const int64_t c_begin = s * units.channels_per_segment;
      const int64_t c_end = ss_min(c_begin + units.channels_per_segment, Din);
      for (int64_t i = 0; i < acc_n; ++i) acc[i] = S(0);
      for (int64_t g = 0; g < K; ++g) {
        const int64_t* idx = p.index + g * L;
        const int64_t* gidx = p.sequence_inputs ? nullptr : idx;
        gather_rows_transposed<T, S>(
            static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_direction) * bc_elem, p.bc_dtype,
            p.B_stride_state, N, L, npad, gidx, Bt);
        gather_rows_transposed<T, S>(
            static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_direction) * bc_elem, p.bc_dtype,
            p.C_stride_state, N, L, npad, gidx, Ct);
        if (R > 0) {
          gather_rows<T, S>(
              static_cast<const char*>(p.dt) + (b * p.dt_stride_batch + g * p.dt_stride_direction) * t_elem, p.dtype,
              p.dt_stride_rank, R, L, gidx, DTt);
        }
        const S w_g = weights ? weights[g * p.weights_stride] : S(1);
        for (int64_t c = c_begin; c < c_end; ++c) {
          const int64_t d = g * Din + c;
          for (int64_t n = 0; n < npad; ++n) {
            a_s[n] = n < N ? A[d * p.A_stride_dim + n * p.A_stride_state] : S(0);
            h_s[n] = S(0);
          }
          for (int64_t r = 0; r < R; ++r) wdt[r] = wdt_all[d * p.dt_weight_stride_dim + r * p.dt_weight_stride_rank];
          const int64_t u_off = b * p.u_stride_batch + g * p.u_stride_direction + c * p.u_stride_dim;
          const int64_t dl_off = b * p.delta_stride_batch + g * p.delta_stride_direction + c * p.delta_stride_dim;
          const int64_t z_off = b * p.z_stride_batch + g * p.z_stride_direction + c * p.z_stride_dim;
          const int64_t o_off = p.reduce_sum ? b * p.out_stride_batch + c * p.out_stride_dim
                                             : b * p.out_stride_batch + g * p.out_stride_direction + c * p.out_stride_dim;
          S* acc_c = acc + (c - c_begin) * NT;
          const S bias_d = bias ? bias[d * p.delta_bias_stride] : S(0);
          const S skip_d = Dp ? Dp[d * p.D_stride] : S(0);
          for (int64_t ch = 0; ch < num_chunks; ++ch) {
            const int64_t t0 = ch * Tc, tn = ss_min(Tc, L - t0);
            if (saved) {
              S* dst = saved + ((b * K * Din + d) * num_chunks + ch) * N;
              for (int64_t n = 0; n < N; ++n) dst[n] = h_s[n];
            }
            const int64_t tv = round_up(tn, kLanes);
            if (R > 0) project_delta(DTt, L, t0, tn, tv, wdt, R, bias_d, dlt);
            for (int64_t i = 0; i < tv; ++i) {
              const int64_t t = t0 + i;
              const int64_t pos = i >= tn ? -1 : (p.sequence_inputs ? t : idx[t]);
              if (R == 0) dlt[i] = i < tn ? (pos >= 0 ? load_as<T, S>(p.delta, dl_off + pos) : S(0)) + bias_d : S(0);
              uu[i] = pos >= 0 ? load_as<T, S>(p.u, u_off + pos) : S(0);
              if (p.z) zz[i] = pos >= 0 ? load_as<T, S>(p.z, z_off + pos) : S(0);
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
              const int64_t tok = idx[t0 + i];
              if (tok < 0) continue;
              S y = hsum(yacc[i]) + skip_d * uu[i];
              if (p.z) y *= zz[i] * zs[i];
              y *= w_g;
              if (p.reduce_sum) {
                acc_c[tok] += y;
              } else {
                store_t<T, S>(p.out, o_off + tok * p.out_stride_token, y);
              }
            }
          }
        }
      }
      if (p.reduce_sum) {
        for (int64_t c = c_begin; c < c_end; ++c) {
          const S* acc_c = acc + (c - c_begin) * NT;
          const int64_t o_off = b * p.out_stride_batch + c * p.out_stride_dim;
          for (int64_t tok = 0; tok < NT; ++tok) store_t<T, S>(p.out, o_off + tok * p.out_stride_token, acc_c[tok]);
        }
      }
    }
  });
}

template <typename T, typename S>
void dir_bwd_kernel(const DirectionalScanParams& p, const DirectionalScanGrads& gr) {
  using V = typename VecOf<S>::type;
  constexpr int64_t kLanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t N = p.dstate, L = p.length, Tc = p.chunk_size, K = p.num_directions, R = p.dt_rank;
  const int64_t NT = p.num_tokens, Din = p.dim, KD = K * Din;
  const int64_t npad = round_up(N, kLanes), nv = npad / kLanes;
  const int64_t num_chunks = directional_scan_num_chunks(p);
  const DirUnits units = make_dir_units(p);
  const S* A = static_cast<const S*>(p.A);
  const S* Dp = static_cast<const S*>(p.D);
  const S* bias = static_cast<const S*>(p.delta_bias);
  const S* wdt_all = static_cast<const S*>(p.dt_weight);
  const S* weights = static_cast<const S*>(p.weights);
  const S* saved = static_cast<const S*>(p.chunk_states);
  const int64_t bc_elem = element_size(p.bc_dtype), t_elem = element_size(p.dtype);
  const bool u_shared = p.u_stride_direction == 0 && K > 1;
  const bool want_dw = weights && gr.dweights;
  const bool want_y = p.z != nullptr || want_dw;

  // Partials: dB / dC ((t, n) rows) and ddt ((t, r) rows) per (batch, direction, segment);
  // dA, dD, ddelta_bias, ddt_weight, dweights per (batch, global channel).
  const int64_t part_bc = L * npad, part_dt = L * R;
  const int64_t num_parts = p.batch * K * units.segments;
  const bool want_bc = gr.dB || gr.dC;
  Scratch dbc_part(static_cast<size_t>(want_bc ? 2 * num_parts * part_bc : 0) * sizeof(S));
  S* dB_part = static_cast<S*>(dbc_part.ptr);
  S* dC_part = dB_part + num_parts * part_bc;
  Scratch ddt_part_mem(static_cast<size_t>(gr.ddt ? num_parts * part_dt : 0) * sizeof(S));
  S* ddt_part = static_cast<S*>(ddt_part_mem.ptr);
  const int64_t per_ch = npad + 3 + R;
  Scratch small_part(static_cast<size_t>(p.batch * KD * per_ch) * sizeof(S));
  S* small = static_cast<S*>(small_part.ptr);  // per (b, d): dA[npad], dD, dbias, dweight, dW[R]

  const int64_t T_pad = round_up(Tc, kLanes);
  const int64_t acc_n = u_shared ? units.channels_per_segment * NT : 0;
  const size_t bytes = 2 * arena_bytes<S>(L * npad) + arena_bytes<S>(L * R) + 4 * arena_bytes<V>(nv) +
                       arena_bytes<V>((Tc + 1) * nv) + arena_bytes<V>(Tc * nv) + 3 * arena_bytes<V>(T_pad) +
                       9 * arena_bytes<S>(T_pad) + 2 * arena_bytes<S>(R) + arena_bytes<S>(acc_n) +
                       arena_bytes<S>(want_bc ? 0 : 2 * part_bc);
  parallel_for(units.count, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(bytes);
    Arena arena{static_cast<char*>(scratch.ptr)};
    S* Bt = arena.take<S>(L * npad);
    S* Ct = arena.take<S>(L * npad);
    S* DTt = arena.take<S>(L * R);
    V* a_v = arena.take<V>(nv);
    V* q = arena.take<V>(nv);
    V* dA_acc = arena.take<V>(nv);
    V* tmp = arena.take<V>(nv);
    V* hs = arena.take<V>((Tc + 1) * nv);
    V* das = arena.take<V>(Tc * nv);
    V* vdu = arena.take<V>(T_pad);
    V* vdd = arena.take<V>(T_pad);
    V* yacc = arena.take<V>(T_pad);
    S* dlt = arena.take<S>(T_pad);
    S* dlu = arena.take<S>(T_pad);
    S* uu = arena.take<S>(T_pad);
    S* zz = arena.take<S>(T_pad);
    S* dy = arena.take<S>(T_pad);
    S* dsp = arena.take<S>(T_pad);
    S* gate = arena.take<S>(T_pad);
    S* dor = arena.take<S>(T_pad);  // raw output gradient (before weights and gate)
    S* ddv = arena.take<S>(T_pad);  // gradient of delta (after bias, before softplus)
    S* wdt = arena.take<S>(R);
    S* dW = arena.take<S>(R);
    S* acc = arena.take<S>(acc_n);
    S* bc_dummy = arena.take<S>(want_bc ? 0 : 2 * part_bc);  // sink for unused dB / dC (never read)
    const V* Btv = reinterpret_cast<const V*>(Bt);
    const V* Ctv = reinterpret_cast<const V*>(Ct);
    S* a_s = reinterpret_cast<S*>(a_v);
    S* q_s = reinterpret_cast<S*>(q);
    S* dA_s = reinterpret_cast<S*>(dA_acc);
    S* tmp_s = reinterpret_cast<S*>(tmp);
    if (!want_bc)
      for (int64_t k = 0; k < 2 * part_bc; ++k) bc_dummy[k] = S(0);

    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t s = unit % units.segments, b = unit / units.segments;
      const int64_t c_begin = s * units.channels_per_segment;
      const int64_t c_end = ss_min(c_begin + units.channels_per_segment, Din);
      for (int64_t i = 0; i < acc_n; ++i) acc[i] = S(0);
      for (int64_t g = 0; g < K; ++g) {
        const int64_t* idx = p.index + g * L;
        const int64_t* gidx = p.sequence_inputs ? nullptr : idx;
        gather_rows_transposed<T, S>(
            static_cast<const char*>(p.B) + (b * p.B_stride_batch + g * p.B_stride_direction) * bc_elem, p.bc_dtype,
            p.B_stride_state, N, L, npad, gidx, Bt);
        gather_rows_transposed<T, S>(
            static_cast<const char*>(p.C) + (b * p.C_stride_batch + g * p.C_stride_direction) * bc_elem, p.bc_dtype,
            p.C_stride_state, N, L, npad, gidx, Ct);
        if (R > 0) {
          gather_rows<T, S>(
              static_cast<const char*>(p.dt) + (b * p.dt_stride_batch + g * p.dt_stride_direction) * t_elem, p.dtype,
              p.dt_stride_rank, R, L, gidx, DTt);
        }
        const int64_t part = (b * K + g) * units.segments + s;
        S* dBp = want_bc ? dB_part + part * part_bc : bc_dummy;
        S* dCp = want_bc ? dC_part + part * part_bc : bc_dummy + part_bc;
        if (want_bc)
          for (int64_t k = 0; k < part_bc; ++k) dBp[k] = dCp[k] = S(0);
        S* ddtp = gr.ddt ? ddt_part + part * part_dt : nullptr;
        if (ddtp)
          for (int64_t k = 0; k < part_dt; ++k) ddtp[k] = S(0);
        V* dBv = reinterpret_cast<V*>(dBp);
        V* dCv = reinterpret_cast<V*>(dCp);
        const S w_g = weights ? weights[g * p.weights_stride] : S(1);

        for (int64_t c = c_begin; c < c_end; ++c) {
          const int64_t d = g * Din + c;
          for (int64_t n = 0; n < npad; ++n) {
            a_s[n] = n < N ? A[d * p.A_stride_dim + n * p.A_stride_state] : S(0);
            q_s[n] = S(0);
            dA_s[n] = S(0);
          }
          for (int64_t r = 0; r < R; ++r) {
            wdt[r] = wdt_all[d * p.dt_weight_stride_dim + r * p.dt_weight_stride_rank];
            dW[r] = S(0);
          }
          const int64_t u_off = b * p.u_stride_batch + g * p.u_stride_direction + c * p.u_stride_dim;
          const int64_t dl_off = b * p.delta_stride_batch + g * p.delta_stride_direction + c * p.delta_stride_dim;
          const int64_t z_off = b * p.z_stride_batch + g * p.z_stride_direction + c * p.z_stride_dim;
          const int64_t go_off = p.reduce_sum
                                     ? b * gr.dout_stride_batch + c * gr.dout_stride_dim
                                     : b * gr.dout_stride_batch + g * gr.dout_stride_direction + c * gr.dout_stride_dim;
          const int64_t du_off = b * gr.du_stride_batch + g * gr.du_stride_direction + c * gr.du_stride_dim;
          const int64_t dd_off = b * gr.ddelta_stride_batch + g * gr.ddelta_stride_direction + c * gr.ddelta_stride_dim;
          const int64_t dz_off = b * gr.dz_stride_batch + g * gr.dz_stride_direction + c * gr.dz_stride_dim;
          S* acc_c = acc + (c - c_begin) * NT;
          const S bias_d = bias ? bias[d * p.delta_bias_stride] : S(0);
          const S skip_d = Dp ? Dp[d * p.D_stride] : S(0);
          S dD_acc = 0, dbias_acc = 0, dw_acc = 0;
          for (int64_t ch = num_chunks - 1; ch >= 0; --ch) {
            const int64_t t0 = ch * Tc, tn = ss_min(Tc, L - t0);
            const int64_t tv = round_up(tn, kLanes);
            if (R > 0) project_delta(DTt, L, t0, tn, tv, wdt, R, bias_d, dlt);
            for (int64_t i = 0; i < tv; ++i) {
              const int64_t t = t0 + i;
              const bool in = i < tn;
              const int64_t pos = !in ? -1 : (p.sequence_inputs ? t : idx[t]);
              const int64_t tok = in ? idx[t] : -1;
              if (R == 0) dlt[i] = in ? (pos >= 0 ? load_as<T, S>(p.delta, dl_off + pos) : S(0)) + bias_d : S(0);
              dsp[i] = S(1);
              uu[i] = pos >= 0 ? load_as<T, S>(p.u, u_off + pos) : S(0);
              dor[i] = tok >= 0 ? load_as<T, S>(gr.dout, go_off + tok * gr.dout_stride_token) : S(0);
              dy[i] = w_g * dor[i];
              if (p.z) zz[i] = pos >= 0 ? load_as<T, S>(p.z, z_off + pos) : S(0);
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
                dor[i] *= zi * sg;  // dweights needs dout * silu(z) * (sum C h + D u)
              }
            }
            const S* start = saved + ((b * KD + d) * num_chunks + ch) * N;
            for (int64_t n = 0; n < npad; ++n) tmp_s[n] = n < N ? start[n] : S(0);
            for (int64_t j = 0; j < nv; ++j) hs[j] = tmp[j];
            for_blocks(nv, [&](auto jb, int64_t j0) {
              recompute_block<decltype(jb)::value>(hs + j0, das + j0, a_v + j0, Btv + t0 * nv + j0, nv, tn, dlt, dlu);
            });
            for_blocks(nv, [&](auto jb, int64_t j0) {
              adjoint_block<decltype(jb)::value>(q + j0, dA_acc + j0, a_v + j0, hs + j0, das + j0,
                                                 Btv + t0 * nv + j0, Ctv + t0 * nv + j0, dBv + t0 * nv + j0,
                                                 dCv + t0 * nv + j0, nv, tn, dlt, dlu, dy, vdu, vdd, yacc, j0 == 0,
                                                 want_y);
            });
            for (int64_t i = 0; i < tn; ++i) {
              const int64_t t = t0 + i;
              const int64_t pos = p.sequence_inputs ? t : idx[t];
              const S gb = hsum(vdu[i]);
              const S du_t = dlt[i] * gb + skip_d * dy[i];
              const S dd_t = (hsum(vdd[i]) + uu[i] * gb) * dsp[i];
              dD_acc += dy[i] * uu[i];
              dbias_acc += dd_t;
              ddv[i] = dd_t;
              S y_pre = S(0);
              if (want_y) y_pre = hsum(yacc[i]) + skip_d * uu[i];
              if (want_dw) dw_acc += dor[i] * y_pre;
              if (pos < 0) continue;  // token-order padding step: constant inputs
              if (gr.du) {
                if (u_shared) {
                  acc_c[pos] += du_t;
                } else {
                  store_t<T, S>(gr.du, du_off + pos, du_t);
                }
              }
              if (gr.ddelta && R == 0) store_t<T, S>(gr.ddelta, dd_off + pos, dd_t);
              if (p.z && gr.dz) store_t<T, S>(gr.dz, dz_off + pos, y_pre * gate[i]);
            }
            for (int64_t r = 0; r < R; ++r) {  // delta = sum_r w[r] dt[r]: dW[r] += <ddelta, dt[r]>, ddt[r] += w[r] ddelta
              const S* row = DTt + r * L + t0;
              dW[r] += dot_unaligned(ddv, row, tn);
              if (ddtp) {
                S* drow = ddtp + r * L + t0;
                const S w = wdt[r];
                for (int64_t i = 0; i < tn; ++i) drow[i] += w * ddv[i];
              }
            }
          }
          S* sp = small + (b * KD + d) * per_ch;
          for (int64_t n = 0; n < npad; ++n) sp[n] = dA_s[n];
          sp[npad] = dD_acc;
          sp[npad + 1] = dbias_acc;
          sp[npad + 2] = dw_acc;
          for (int64_t r = 0; r < R; ++r) sp[npad + 3 + r] = dW[r];
        }
      }
      if (u_shared && gr.du) {
        for (int64_t c = c_begin; c < c_end; ++c) {
          const S* acc_c = acc + (c - c_begin) * NT;
          const int64_t off = b * gr.du_stride_batch + c * gr.du_stride_dim;
          for (int64_t tok = 0; tok < NT; ++tok) store_t<T, S>(gr.du, off + tok, acc_c[tok]);
        }
      }
    }
  });

  // Fixed-order reductions over the segments, scattered to token order.
  const int64_t in_len = directional_scan_input_length(p);
  if (want_bc || gr.ddt) {
    parallel_for(p.batch * K, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bg = begin; bg < end; ++bg) {
        const int64_t b = bg / K, g = bg % K;
        const int64_t* idx = p.index + g * L;
        const int64_t first = bg * units.segments;
        for (int which = 0; which < 3; ++which) {
          void* dst = which == 0 ? gr.dB : which == 1 ? gr.dC : gr.ddt;
          if (!dst) continue;
          const S* part = which == 0 ? dB_part : which == 1 ? dC_part : ddt_part;
          const int64_t stride = which == 2 ? part_dt : part_bc;
          const int64_t pitch = npad;
          const int64_t rows = which == 2 ? R : N;
          part += first * stride;
          int64_t row0, srow;
          if (which == 0) {
            row0 = b * gr.dB_stride_batch + g * gr.dB_stride_direction, srow = gr.dB_stride_state;
          } else if (which == 1) {
            row0 = b * gr.dC_stride_batch + g * gr.dC_stride_direction, srow = gr.dC_stride_state;
          } else {
            row0 = b * gr.ddt_stride_batch + g * gr.ddt_stride_direction, srow = gr.ddt_stride_rank;
          }
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t t = 0; t < L; ++t) {
              const int64_t pos = p.sequence_inputs ? t : idx[t];
              if (pos < 0 || pos >= in_len) continue;
              const int64_t at = which == 2 ? r * L + t : t * pitch + r;
              S a = part[at];
              for (int64_t k = 1; k < units.segments; ++k) a += part[k * stride + at];
              if (which == 2) {
                store_t<T, S>(dst, row0 + r * srow + pos, a);
              } else {
                store_bc<T, S>(dst, p.bc_dtype, row0 + r * srow + pos, a);
              }
            }
          }
        }
      }
    });
  }
  for (int64_t d = 0; d < KD; ++d) {
    S dD = 0, dbias = 0;
    for (int64_t n = 0; n < N; ++n) {
      S a = 0;
      for (int64_t b = 0; b < p.batch; ++b) a += small[(b * KD + d) * per_ch + n];
      if (gr.dA) static_cast<S*>(gr.dA)[d * gr.dA_stride_dim + n * gr.dA_stride_state] = a;
    }
    for (int64_t r = 0; r < R; ++r) {
      S a = 0;
      for (int64_t b = 0; b < p.batch; ++b) a += small[(b * KD + d) * per_ch + npad + 3 + r];
      if (gr.ddt_weight) static_cast<S*>(gr.ddt_weight)[d * gr.ddt_weight_stride_dim + r * gr.ddt_weight_stride_rank] = a;
    }
    for (int64_t b = 0; b < p.batch; ++b) {
      dD += small[(b * KD + d) * per_ch + npad];
      dbias += small[(b * KD + d) * per_ch + npad + 1];
    }
    if (gr.dD) static_cast<S*>(gr.dD)[d * gr.dD_stride] = dD;
    if (gr.ddelta_bias) static_cast<S*>(gr.ddelta_bias)[d * gr.ddelta_bias_stride] = dbias;
  }
  if (want_dw) {
    for (int64_t g = 0; g < K; ++g) {
      S a = 0;
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t c = 0; c < Din; ++c) a += small[(b * KD + g * Din + c) * per_ch + npad + 2];
      static_cast<S*>(gr.dweights)[g * gr.dweights_stride] = a;
    }
  }
}

void run_dir_fwd(const DirectionalScanParams& p) {
  dispatch_types(p.dtype, [&](auto t, auto s) { dir_fwd_kernel<decltype(t), decltype(s)>(p); });
}

void run_dir_bwd(const DirectionalScanParams& p, const DirectionalScanGrads& g) {
  dispatch_types(p.dtype, [&](auto t, auto s) { dir_bwd_kernel<decltype(t), decltype(s)>(p, g); });
}

}  // namespace
}  // namespace localmamba
