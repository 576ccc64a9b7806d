// Internal: the CPU kernel of scan_conv_train.h (contract there). Included by the per-ISA
// translation units right after mixer_infer_cpu_kernel.h (it shares vexp and load_part /
// store_part of directional_scan_infer_cpu_kernel.h). Lanes are channels; a row's tail that does
// not fill a vector is read zero-filled and stored partially. The per-direction loop is compiled
// for the common tap counts (2, 3, 4), with the taps in registers, and once for any count.
#pragma once

#ifndef LOCALMAMBA_SS_VECTOR_BYTES
#error "include selective_scan_cpu_kernel.h first"
#endif

#include "localmamba/scan_conv_train.h"

namespace localmamba {

namespace {

// Pass 1 for batch b, direction k and the vector of channels at c: every step in order. A window
// of `taps` rows (the input rows the current step's taps read) and of `taps` dpre values (of the
// last steps) slides along the scan; once step s has all the dpre it feeds (steps s .. s+taps-1),
// its share of dx is added into the row of the token it reads. Writes the (b, k) partial dweight
// (rows 0..taps-1 of `partial`) and dbias (row taps). TAPS = 0: the count is params.taps. FULL: a
// whole vector of channels (a constant count: plain vector loads and stores, all in registers).
template <typename S, int TAPS, bool FULL>
void scan_conv_bwd_direction(const ScanConvInferParams& p, const ScanConvTrainGrads& g, int64_t b, int64_t k,
                             int64_t c, S* partial) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  constexpr int64_t cap = TAPS > 0 ? TAPS : kScanConvMaxTaps;
  const int64_t taps = TAPS > 0 ? TAPS : p.taps;
  const int64_t cn = FULL ? lanes : ss_min(lanes, p.dim - c);
  const int64_t* idx = p.index + k * p.length;
  const S* x = static_cast<const S*>(p.x) + b * p.x_stride_batch + c;
  const S* dy = static_cast<const S*>(g.dout) + b * g.dout_stride_batch + k * g.dout_stride_direction + c;
  S* dx = static_cast<S*>(g.dx) + b * g.dx_stride_batch + c;
  const S* w = static_cast<const S*>(p.weight) + k * p.weight_stride_direction + c;
  V wv[cap], dw[cap], window[cap];  // window[i]: dpre of step t - taps + 1 + i
  const S* rows[cap];               // rows[j]: the row tap j of step t reads (null: zeros)
  for (int64_t j = 0; j < taps; ++j) {
    wv[j] = load_part<V>(w + j * p.weight_stride_tap, cn);
    dw[j] = window[j] = V{};
    rows[j] = nullptr;
  }
  const V bv = p.bias ? load_part<V>(static_cast<const S*>(p.bias) + k * p.bias_stride_direction + c, cn) : V{};
  V db{};
  // Loop-invariant fields in locals: the dx stores could alias the params for all the compiler knows.
  const int64_t length = p.length, x_stride = p.x_stride_token, dy_stride = g.dout_stride_step;
  const int64_t dx_stride = g.dx_stride_token;
  const bool silu = p.silu;
  for (int64_t t = 0; t < length + taps - 1; ++t) {
    for (int64_t j = 0; j + 1 < taps; ++j) rows[j] = rows[j + 1];
    const int64_t tok = t < length ? idx[t] : -1;
    rows[taps - 1] = tok < 0 ? nullptr : x + tok * x_stride;
    V gv{};
    if (t < length) {
      gv = load_part<V>(dy + t * dy_stride, cn);
      if (silu) {  // recompute pre as the forward does; silu'(pre) = sig (1 + pre (1 - sig))
        V pre = bv;
        for (int64_t j = 0; j < taps; ++j)
          if (rows[j]) pre += wv[j] * load_part<V>(rows[j], cn);
        const V sig = S(1) / (vexp(-pre) + 1);
        gv = gv * (sig * (1 + pre * (1 - sig)));
      }
      db += gv;
      for (int64_t j = 0; j < taps; ++j)
        if (rows[j]) dw[j] += gv * load_part<V>(rows[j], cn);
    }
    for (int64_t i = 0; i + 1 < taps; ++i) window[i] = window[i + 1];
    window[taps - 1] = gv;
    const int64_t s = t - taps + 1;
    const int64_t read = s < 0 ? -1 : idx[s];
    if (read >= 0) {  // dx[read] += sum_j w_j dpre[s + taps - 1 - j]
      V acc = wv[0] * window[taps - 1];
      for (int64_t j = 1; j < taps; ++j) acc += wv[j] * window[taps - 1 - j];
      S* o = dx + read * dx_stride;
      store_part(o, load_part<V>(o, cn) + acc, cn);
    }
  }
  for (int64_t j = 0; j < taps; ++j) store_part(partial + j * p.dim + c, dw[j], cn);
  store_part(partial + taps * p.dim + c, db, cn);
}

// Pass 1, one unit (batch b, channels [c0, c1)): dx rows zeroed, then the directions in order.
template <typename S, int TAPS>
void scan_conv_bwd_unit(const ScanConvInferParams& p, const ScanConvTrainGrads& g, S* partials, int64_t b, int64_t c0,
                        int64_t c1) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  S* dx = static_cast<S*>(g.dx) + b * g.dx_stride_batch;
  // The unit of the last segment also zeroes the channels past dim.
  const int64_t zero_end = c1 == p.dim && g.dx_channels > p.dim ? g.dx_channels : c1;
  for (int64_t tok = 0; tok < p.num_tokens; ++tok)
    for (int64_t c = c0; c < zero_end; c += lanes)
      store_part(dx + tok * g.dx_stride_token + c, V{}, ss_min(lanes, zero_end - c));
  for (int64_t k = 0; k < p.num_directions; ++k) {
    S* partial = partials + (b * p.num_directions + k) * (p.taps + 1) * p.dim;
    for (int64_t c = c0; c < c1; c += lanes) {
      if (c + lanes <= c1) scan_conv_bwd_direction<S, TAPS, true>(p, g, b, k, c, partial);
      else scan_conv_bwd_direction<S, TAPS, false>(p, g, b, k, c, partial);
    }
  }
}

template <typename S, int TAPS>
void scan_conv_bwd_pass(const ScanConvInferParams& p, const ScanConvTrainGrads& g, S* partials) {
  const int64_t segments = scan_conv_train_segments(p), width = scan_conv_train_segment_channels(p);
  parallel_for(scan_conv_train_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t c0 = (unit % segments) * width;
      scan_conv_bwd_unit<S, TAPS>(p, g, partials, unit / segments, c0, ss_min(p.dim, c0 + width));
    }
  });
}

// Pass 2, one unit (direction k, partial row r): the (batch, k) partials summed over the batch in order.
template <typename S>
void scan_conv_bwd_reduce(const ScanConvInferParams& p, const ScanConvTrainGrads& g, const S* partials, int64_t k,
                          int64_t r) {
  using V = typename VecOf<S>::type;
  constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(S));
  S* out = r < p.taps ? static_cast<S*>(g.dweight) + k * g.dweight_stride_direction + r * g.dweight_stride_tap
                      : static_cast<S*>(g.dbias) + k * g.dbias_stride_direction;
  const int64_t batch_stride = p.num_directions * (p.taps + 1) * p.dim;
  const S* first = partials + (k * (p.taps + 1) + r) * p.dim;
  for (int64_t c = 0; c < p.dim; c += lanes) {
    const int64_t cn = ss_min(lanes, p.dim - c);
    V acc{};
    for (int64_t b = 0; b < p.batch; ++b) acc += load_part<V>(first + b * batch_stride + c, cn);
    store_part(out + c, acc, cn);
  }
}

template <typename S>
void scan_conv_train_kernel(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  S* partials = static_cast<S*>(g.workspace);
  switch (p.taps) {
    case 2: scan_conv_bwd_pass<S, 2>(p, g, partials); break;
    case 3: scan_conv_bwd_pass<S, 3>(p, g, partials); break;
    case 4: scan_conv_bwd_pass<S, 4>(p, g, partials); break;
    default: scan_conv_bwd_pass<S, 0>(p, g, partials); break;
  }
  parallel_for(scan_conv_train_reduce_units(p), 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t k = unit / (p.taps + 1), r = unit % (p.taps + 1);
      if (r < p.taps || g.dbias) scan_conv_bwd_reduce<S>(p, g, partials, k, r);
    }
  });
}

void run_scan_conv_train_bwd(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  p.dtype == DType::kFloat64 ? scan_conv_train_kernel<double>(p, g) : scan_conv_train_kernel<float>(p, g);
}

}  // namespace
}  // namespace localmamba
