// Internal: the CPU kernels of gated_sum_train.h (contract there). Included by the per-ISA
// translation units right after mixer_infer_cpu_kernel.h, whose row_moments (the forward's row
// statistics, recomputed here bit for bit), load_part / store_part and vector types it reuses.
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/gated_sum_train.h"

namespace localmamba {
namespace {

template <typename S>
inline const S* gst_row(const void* base, int64_t b, int64_t sb, int64_t k, int64_t sk, int64_t t, int64_t st) {
  return static_cast<const S*>(base) + b * sb + k * sk + t * st;
}

// gate_grad: per unit the token block's sum of dout * y into the workspace, then per (b, k) the
// blocks' sums in block order.
template <typename S>
void gate_grad_kernel(const GatedSumTrainParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t blocks = (p.num_tokens + kGatedSumTrainTokens - 1) / kGatedSumTrainTokens;
  S* ws = static_cast<S*>(p.workspace);
  parallel_for(gated_sum_train_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t b = bk / p.num_directions, k = bk % p.num_directions;
      const int64_t t0 = blk * kGatedSumTrainTokens, t1 = ss_min(p.num_tokens, t0 + kGatedSumTrainTokens);
      S* acc = ws + unit * p.dim;
      for (int64_t c = 0; c < p.dim; c += lanes) {
        const int64_t cn = ss_min(lanes, p.dim - c);
        V sum{};
        for (int64_t t = t0; t < t1; ++t) {
          const S* y = gst_row<S>(p.y, b, p.y_stride_batch, k, p.y_stride_direction, t, p.y_stride_token);
          const S* g = gst_row<S>(p.dout, b, p.dout_stride_batch, 0, 0, t, p.dout_stride_token);
          sum += load_part<V>(g + c, cn) * load_part<V>(y + c, cn);
        }
        store_part(acc + c, sum, cn);
      }
    }
  });
  parallel_for(p.batch * p.num_directions, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bk = begin; bk < end; ++bk) {
      S* out = static_cast<S*>(p.out) + (bk / p.num_directions) * p.out_stride_batch +
               (bk % p.num_directions) * p.out_stride_direction;
      const S* part = ws + bk * blocks * p.dim;
      for (int64_t c = 0; c < p.dim; ++c) {
        S s = part[c];
        for (int64_t i = 1; i < blocks; ++i) s += part[i * p.dim + c];
        out[c] = s;
      }
    }
  });
}

// Sum of e[0, n) * (row - mu)[0, n) in a fixed order (lane-wise, then the lanes, then the tail).
template <typename S>
inline S row_dot_centered(const S* row, const S* e, int64_t n, S mu) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  V acc{};
  int64_t c = 0;
  for (; c + lanes <= n; c += lanes) acc += load_part<V>(e + c, lanes) * (load_part<V>(row + c, lanes) - mu);
  S s = hsum(acc);
  for (; c < n; ++c) s += e[c] * (row[c] - mu);
  return s;
}

template <typename S>
void gated_sum_bwd_y_kernel(const GatedSumTrainParams& p) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t blocks = (p.num_tokens + kGatedSumTrainTokens - 1) / kGatedSumTrainTokens;
  const S inv_dim = S(1) / static_cast<S>(p.dim);
  parallel_for(gated_sum_train_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t b = bk / p.num_directions, k = bk % p.num_directions;
      const S* s = gst_row<S>(p.gate, b, p.gate_stride_batch, k, p.gate_stride_direction, 0, 0);
      const S* e = gst_row<S>(p.token_grad, b, p.token_grad_stride_batch, k, p.token_grad_stride_direction, 0, 0);
      const S e_mean = row_sum(e, p.dim) * inv_dim;
      const int64_t t0 = blk * kGatedSumTrainTokens, t1 = ss_min(p.num_tokens, t0 + kGatedSumTrainTokens);
      for (int64_t t = t0; t < t1; ++t) {
        const S* y = gst_row<S>(p.y, b, p.y_stride_batch, k, p.y_stride_direction, t, p.y_stride_token);
        const S* g = gst_row<S>(p.dout, b, p.dout_stride_batch, 0, 0, t, p.dout_stride_token);
        S* out = static_cast<S*>(p.out) + b * p.out_stride_batch + k * p.out_stride_direction + t * p.out_stride_token;
        S mu, rstd;
        row_moments(y, p.dim, p.eps, &mu, &rstd);
        const S beta = rstd * rstd * rstd * inv_dim * row_dot_centered(y, e, p.dim, mu);
        for (int64_t c = 0; c < p.dim; c += lanes) {
          const int64_t cn = ss_min(lanes, p.dim - c);
          const V dy = load_part<V>(g + c, cn) * load_part<V>(s + c, cn) + rstd * (load_part<V>(e + c, cn) - e_mean) -
                       beta * (load_part<V>(y + c, cn) - mu);
          store_part(out + c, dy, cn);
        }
      }
    }
  });
}

void run_gate_grad(const GatedSumTrainParams& p) {
  p.dtype == DType::kFloat64 ? gate_grad_kernel<double>(p) : gate_grad_kernel<float>(p);
}
void run_gated_sum_bwd_y(const GatedSumTrainParams& p) {
  p.dtype == DType::kFloat64 ? gated_sum_bwd_y_kernel<double>(p) : gated_sum_bwd_y_kernel<float>(p);
}

}  // namespace
}  // namespace localmamba
