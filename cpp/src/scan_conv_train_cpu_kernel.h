// Internal: the CPU kernel of scan_conv_train.h (contract there). Included by the per-ISA
// translation units right after mixer_infer_cpu_kernel.h, whose silu_vec it shares (with vexp,
// load_part / store_part of directional_scan_infer_cpu_kernel.h). Lanes are channels; a row's tail
// that does not fill a vector is read zero-filled and stored partially.
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/scan_conv_train.h"

namespace localmamba {
namespace {

// The gradient of pre that pass 2 reads: dpre in the workspace, or dout itself without silu.
template <typename S>
struct ScanConvGradRows {
  const S* ptr;
  int64_t stride_batch, stride_direction, stride_step;
  const S* row(int64_t b, int64_t k, int64_t t) const {
    return ptr + b * stride_batch + k * stride_direction + t * stride_step;
  }
};

// Pass 1, one unit (batch b, direction k, steps [t0, t1)): dpre of those steps and the unit's
// partial sums, rows 0..taps-1 of dweight and row taps of dbias.
template <typename S>
void scan_conv_bwd_steps(const ScanConvInferParams& p, const ScanConvTrainGrads& g, S* dpre, S* partial, int64_t b,
                         int64_t k, int64_t t0, int64_t t1) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const int64_t* idx = p.index + k * p.length;
  const S* x = static_cast<const S*>(p.x) + b * p.x_stride_batch;
  const S* w = static_cast<const S*>(p.weight) + k * p.weight_stride_direction;
  const S* bias = p.bias ? static_cast<const S*>(p.bias) + k * p.bias_stride_direction : nullptr;
  const S* dy = static_cast<const S*>(g.dout) + b * g.dout_stride_batch + k * g.dout_stride_direction;
  S* dp = dpre ? dpre + (b * p.num_directions + k) * p.length * p.dim : nullptr;
  // The input row of steps t0 - taps + 1 .. t1 - 1 (null: zeros); tap j of step t is rows[t - t0 + j].
  const S* rows[kScanConvInferSteps + kScanConvMaxTaps - 1];
  const int64_t first = t0 - p.taps + 1;
  for (int64_t s = first; s < t1; ++s) {
    const int64_t tok = s < 0 ? -1 : idx[s];
    rows[s - first] = tok < 0 ? nullptr : x + tok * p.x_stride_token;
  }
  for (int64_t c = 0; c < p.dim; c += lanes) {
    const int64_t cn = ss_min(lanes, p.dim - c);
    V wv[kScanConvMaxTaps], dw[kScanConvMaxTaps];
    for (int64_t j = 0; j < p.taps; ++j) wv[j] = load_part<V>(w + j * p.weight_stride_tap + c, cn), dw[j] = V{};
    const V bv = bias ? load_part<V>(bias + c, cn) : V{};
    V db{};
    for (int64_t t = t0; t < t1; ++t) {
      const S* const* r = rows + (t - t0);
      V gv = load_part<V>(dy + t * g.dout_stride_step + c, cn);
      if (dp) {  // silu: recompute pre as the forward does, then silu'(pre) = sig (1 + pre (1 - sig))
        V pre = bv;
        for (int64_t j = 0; j < p.taps; ++j)
          if (r[j]) pre += wv[j] * load_part<V>(r[j] + c, cn);
        const V sig = S(1) / (vexp(-pre) + 1);
        gv = gv * (sig * (1 + pre * (1 - sig)));
        store_part(dp + t * p.dim + c, gv, cn);
      }
      db += gv;
      for (int64_t j = 0; j < p.taps; ++j)
        if (r[j]) dw[j] += gv * load_part<V>(r[j] + c, cn);
    }
    for (int64_t j = 0; j < p.taps; ++j) store_part(partial + j * p.dim + c, dw[j], cn);
    store_part(partial + p.taps * p.dim + c, db, cn);
  }
}

// Pass 2, one unit (batch b, tokens [tok0, tok1)): dx, directions in order, taps in order.
template <typename S>
void scan_conv_bwd_tokens(const ScanConvInferParams& p, const ScanConvTrainGrads& g, const int64_t* inverse,
                          const ScanConvGradRows<S>& dpre, int64_t b, int64_t tok0, int64_t tok1) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  const S* weight = static_cast<const S*>(p.weight);
  for (int64_t tok = tok0; tok < tok1; ++tok) {
    S* out = static_cast<S*>(g.dx) + b * g.dx_stride_batch + tok * g.dx_stride_token;
    for (int64_t c = 0; c < p.dim; c += lanes) {
      const int64_t cn = ss_min(lanes, p.dim - c);
      V acc{};
      for (int64_t k = 0; k < p.num_directions; ++k) {
        const int64_t s = inverse[k * p.num_tokens + tok];
        if (s < 0) continue;
        const S* w = weight + k * p.weight_stride_direction + c;
        for (int64_t j = 0; j < p.taps; ++j) {
          const int64_t t = s + p.taps - 1 - j;  // the step whose tap j reads this token
          if (t < p.length) acc += load_part<V>(w + j * p.weight_stride_tap, cn) * load_part<V>(dpre.row(b, k, t) + c, cn);
        }
      }
      store_part(out + c, acc, cn);
    }
  }
}

// Pass 3, one unit (direction k, partial row r): the pass-1 partials summed over batch, then blocks.
template <typename S>
void scan_conv_bwd_reduce(const ScanConvInferParams& p, const ScanConvTrainGrads& g, const S* partial, int64_t k,
                          int64_t r) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  S* out = r < p.taps ? static_cast<S*>(g.dweight) + k * g.dweight_stride_direction + r * g.dweight_stride_tap
                      : static_cast<S*>(g.dbias) + k * g.dbias_stride_direction;
  const int64_t blocks = (p.length + kScanConvInferSteps - 1) / kScanConvInferSteps;
  const int64_t row = (p.taps + 1) * p.dim;
  for (int64_t c = 0; c < p.dim; c += lanes) {
    const int64_t cn = ss_min(lanes, p.dim - c);
    V acc{};
    for (int64_t b = 0; b < p.batch; ++b) {
      const S* part = partial + (b * p.num_directions + k) * blocks * row + r * p.dim + c;
      for (int64_t blk = 0; blk < blocks; ++blk) acc += load_part<V>(part + blk * row, cn);
    }
    store_part(out + c, acc, cn);
  }
}

template <typename S>
void scan_conv_train_kernel(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  const ScanConvTrainWorkspace layout = scan_conv_train_workspace(p);
  char* ws = static_cast<char*>(g.workspace);
  const int64_t* inverse = reinterpret_cast<const int64_t*>(ws + layout.inverse_offset);
  S* dpre = p.silu ? reinterpret_cast<S*>(ws + layout.dpre_offset) : nullptr;
  S* partial = reinterpret_cast<S*>(ws + layout.partial_offset);
  const int64_t row = (p.taps + 1) * p.dim;

  const int64_t blocks = (p.length + kScanConvInferSteps - 1) / kScanConvInferSteps;
  parallel_for(scan_conv_infer_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t blk = unit % blocks, bk = unit / blocks;
      const int64_t t0 = blk * kScanConvInferSteps;
      scan_conv_bwd_steps<S>(p, g, dpre, partial + unit * row, bk / p.num_directions, bk % p.num_directions, t0,
                             ss_min(p.length, t0 + kScanConvInferSteps));
    }
  });

  const ScanConvGradRows<S> grad =
      dpre ? ScanConvGradRows<S>{dpre, p.num_directions * p.length * p.dim, p.length * p.dim, p.dim}
           : ScanConvGradRows<S>{static_cast<const S*>(g.dout), g.dout_stride_batch, g.dout_stride_direction,
                                 g.dout_stride_step};
  const int64_t token_blocks = (p.num_tokens + kScanConvTrainTokens - 1) / kScanConvTrainTokens;
  parallel_for(scan_conv_train_dx_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t tok0 = (unit % token_blocks) * kScanConvTrainTokens;
      scan_conv_bwd_tokens<S>(p, g, inverse, grad, unit / token_blocks, tok0,
                              ss_min(p.num_tokens, tok0 + kScanConvTrainTokens));
    }
  });

  parallel_for(scan_conv_train_reduce_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t k = unit / (p.taps + 1), r = unit % (p.taps + 1);
      if (r < p.taps || g.dbias) scan_conv_bwd_reduce<S>(p, g, partial, k, r);
    }
  });
}

void run_scan_conv_train_bwd(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  p.dtype == DType::kFloat64 ? scan_conv_train_kernel<double>(p, g) : scan_conv_train_kernel<float>(p, g);
}

}  // namespace
}  // namespace localmamba
