// Internal: the CPU kernels of mixer_infer.h (contract there). Included by the per-ISA
// translation units right after directional_scan_infer_cpu_kernel.h, whose vector type, vexp
// and load_part / store_part it reuses. Lanes are channels; a row's tail that does not fill
// a vector is read zero-filled and stored partially, and every per-row statistic sums the
// channels in one fixed order (whole vectors lane-wise, then the lanes, then the tail).
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/mixer_infer.h"

namespace localmamba {
namespace {

template <typename V>
inline V silu_vec(V x) {
  return x / (vexp(-x) + 1);
}

// ---- scan_conv_infer -------------------------------------------------------------------------

// One output vector of channels at c: bias + the taps in order, then SiLU. FULL: a whole vector (a
// constant lane count: plain vector loads and stores), else the row's tail.
template <typename S, bool FULL>
inline void scan_conv_vector(const ScanConvInferParams& p, const S* const* rows, const S* w, const S* bias, S* o,
                             int64_t c) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t cn = FULL ? lanes : ss_min(lanes, p.dim - c);
  V acc = bias ? load_part<V>(bias + c, cn) : V{};
  for (int64_t j = 0; j < p.taps; ++j)
    if (rows[j]) acc += load_part<V>(w + j * p.weight_stride_tap + c, cn) * load_part<V>(rows[j] + c, cn);
  store_part(o + c, p.silu ? silu_vec(acc) : acc, cn);
}

template <typename S>
void scan_conv_unit(const ScanConvInferParams& p, int64_t b, int64_t k, int64_t t0, int64_t t1) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t* idx = p.index + k * p.length;
  const S* x = static_cast<const S*>(p.x) + b * p.x_stride_batch;
  const S* w = static_cast<const S*>(p.weight) + k * p.weight_stride_direction;
  const S* bias = p.bias ? static_cast<const S*>(p.bias) + k * p.bias_stride_direction : nullptr;
  S* out = static_cast<S*>(p.out) + b * p.out_stride_batch + k * p.out_stride_direction;
  const int64_t whole = p.dim / lanes * lanes;
  for (int64_t t = t0; t < t1; ++t) {
    const S* rows[kScanConvMaxTaps];  // the input row of each tap (null: zeros)
    for (int64_t j = 0; j < p.taps; ++j) {
      const int64_t s = t - p.taps + 1 + j;
      const int64_t tok = s < 0 ? -1 : idx[s];
      rows[j] = tok < 0 ? nullptr : x + tok * p.x_stride_token;
    }
    S* o = out + t * p.out_stride_step;
    for (int64_t c = 0; c < whole; c += lanes) scan_conv_vector<S, true>(p, rows, w, bias, o, c);
    if (whole < p.dim) scan_conv_vector<S, false>(p, rows, w, bias, o, whole);
  }
}

template <typename S>
void scan_conv_kernel(const ScanConvInferParams& p) {
  const int64_t blocks = (p.length + kScanConvInferSteps - 1) / kScanConvInferSteps;
  parallel_for(scan_conv_infer_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t t0 = blk * kScanConvInferSteps;
      scan_conv_unit<S>(p, bk / p.num_directions, bk % p.num_directions, t0, ss_min(p.length, t0 + kScanConvInferSteps));
    }
  });
}

// ---- row statistics shared by the gate and the merge ------------------------------------------

// Sum of row[0, n) in a fixed order.
template <typename S>
inline S row_sum(const S* row, int64_t n) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  V acc{};
  int64_t c = 0;
  for (; c + lanes <= n; c += lanes) acc += load_part<V>(row + c, lanes);
  S s = hsum(acc);
  for (; c < n; ++c) s += row[c];
  return s;
}

// Sum of (row - mu)^2 over row[0, n) in a fixed order.
template <typename S>
inline S row_sq_dev(const S* row, int64_t n, S mu) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  V acc{};
  int64_t c = 0;
  for (; c + lanes <= n; c += lanes) {
    const V d = load_part<V>(row + c, lanes) - mu;
    acc += d * d;
  }
  S s = hsum(acc);
  for (; c < n; ++c) s += (row[c] - mu) * (row[c] - mu);
  return s;
}

// Mean and 1 / sqrt(var + eps) of row[0, n) (biased variance, two passes: the row stays in L1).
template <typename S>
inline void row_moments(const S* row, int64_t n, double eps, S* mu, S* rstd) {
  const S m = row_sum(row, n) / static_cast<S>(n);
  *mu = m;
  *rstd = S(1) / std::sqrt(row_sq_dev(row, n, m) / static_cast<S>(n) + static_cast<S>(eps));
}

// ---- gate_stats_infer ----------------------------------------------------------------------

template <typename S>
void gate_stats_kernel(const GateStatsInferParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t blocks = (p.num_tokens + kGateStatsInferTokens - 1) / kGateStatsInferTokens;
  S* ws = static_cast<S*>(p.workspace);
  // 1: per (batch, direction, token block): the block's sum of normalised rows.
  parallel_for(gate_stats_infer_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t b = bk / p.num_directions, k = bk % p.num_directions;
      S* acc = ws + unit * p.dim;
      for (int64_t c = 0; c < p.dim; ++c) acc[c] = S(0);
      const S* y = static_cast<const S*>(p.y) + b * p.y_stride_batch + k * p.y_stride_direction;
      const int64_t t1 = ss_min(p.num_tokens, (blk + 1) * kGateStatsInferTokens);
      for (int64_t t = blk * kGateStatsInferTokens; t < t1; ++t) {
        const S* row = y + t * p.y_stride_token;
        S mu, rstd;
        row_moments(row, p.dim, p.eps, &mu, &rstd);
        for (int64_t c = 0; c < p.dim; c += lanes) {
          const int64_t cn = ss_min(lanes, p.dim - c);
          store_part(acc + c, load_part<V>(acc + c, cn) + (load_part<V>(row + c, cn) - mu) * rstd, cn);
        }
      }
    }
  });
  // 2: per (batch, direction): the blocks' sums in block order, divided by the token count.
  parallel_for(p.batch * p.num_directions, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      S* out = static_cast<S*>(p.out) + (bk / p.num_directions) * p.out_stride_batch +
               (bk % p.num_directions) * p.out_stride_direction;
      const S* part = ws + bk * blocks * p.dim;
      for (int64_t c = 0; c < p.dim; ++c) {
        S s = part[c];
        for (int64_t i = 1; i < blocks; ++i) s += part[i * p.dim + c];
        out[c] = s / static_cast<S>(p.num_tokens);
      }
    }
  });
}

// ---- gated_merge_infer ---------------------------------------------------------------------

template <typename S>
void gated_merge_row(const GatedMergeInferParams& p, int64_t b, int64_t t) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const S* y = static_cast<const S*>(p.y) + b * p.y_stride_batch + t * p.y_stride_token;
  const S* gate = static_cast<const S*>(p.gate) + b * p.gate_stride_batch;
  S* out = static_cast<S*>(p.out) + b * p.out_stride_batch + t * p.out_stride_token;
  for (int64_t c = 0; c < p.dim; c += lanes) {
    const int64_t cn = ss_min(lanes, p.dim - c);
    V m = load_part<V>(gate + c, cn) * load_part<V>(y + c, cn);
    for (int64_t k = 1; k < p.num_directions; ++k)
      m += load_part<V>(gate + k * p.gate_stride_direction + c, cn) *
           load_part<V>(y + k * p.y_stride_direction + c, cn);
    store_part(out + c, m, cn);
  }
  if (!p.normalize && !p.z) return;
  S mu = 0, rstd = 1;
  if (p.normalize) row_moments<S>(out, p.dim, p.eps, &mu, &rstd);
  const S* w = static_cast<const S*>(p.norm_weight);
  const S* nb = static_cast<const S*>(p.norm_bias);
  const S* z = p.z ? static_cast<const S*>(p.z) + b * p.z_stride_batch + t * p.z_stride_token : nullptr;
  for (int64_t c = 0; c < p.dim; c += lanes) {
    const int64_t cn = ss_min(lanes, p.dim - c);
    V m = load_part<V>(out + c, cn);
    if (p.normalize) m = (m - mu) * rstd * load_part<V>(w + c, cn) + load_part<V>(nb + c, cn);
    if (z) {
      const V zv = load_part<V>(z + c, cn);
      m *= p.z_silu ? silu_vec(zv) : zv;
    }
    store_part(out + c, m, cn);
  }
}

template <typename S>
void gated_merge_kernel(const GatedMergeInferParams& p) {
  const int64_t blocks = (p.num_tokens + kGatedMergeInferTokens - 1) / kGatedMergeInferTokens;
  parallel_for(gated_merge_infer_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / blocks, t0 = (unit % blocks) * kGatedMergeInferTokens;
      const int64_t t1 = ss_min(p.num_tokens, t0 + kGatedMergeInferTokens);
      for (int64_t t = t0; t < t1; ++t) gated_merge_row<S>(p, b, t);
    }
  });
}

void run_scan_conv_infer(const ScanConvInferParams& p) {
  p.dtype == DType::kFloat64 ? scan_conv_kernel<double>(p) : scan_conv_kernel<float>(p);
}
void run_gate_stats_infer(const GateStatsInferParams& p) {
  p.dtype == DType::kFloat64 ? gate_stats_kernel<double>(p) : gate_stats_kernel<float>(p);
}
void run_gated_merge_infer(const GatedMergeInferParams& p) {
  p.dtype == DType::kFloat64 ? gated_merge_kernel<double>(p) : gated_merge_kernel<float>(p);
}

}  // namespace
}  // namespace localmamba
