// The mixers' forward-only passes (mixer_infer.h) against scalar float64 references written
// straight from the contract, on random non-zero data with odd sizes (channel tails that fill
// no vector, padding steps, partial token blocks).
// Tolerance: rows_test_util.h (float64 1e-10 relative to max|ref|; float32 1e-3 * max|ref| + 3e-4 |ref|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/mixer_infer.h"
#include "localmamba/parallel.h"
#include "rows_test_util.h"

namespace lm = localmamba;

namespace {

using rows_test::cast;
using rows_test::expect_close;
using rows_test::randn;

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// K directions over T tokens, L >= T steps: a permutation of the tokens with L - T padding steps (-1).
std::vector<int64_t> random_index(int64_t K, int64_t L, int64_t T, std::mt19937& g) {
  std::vector<int64_t> index;
  for (int64_t k = 0; k < K; ++k) {
    std::vector<int64_t> row(L, -1);
    std::iota(row.begin(), row.begin() + T, 0);
    std::shuffle(row.begin(), row.end(), g);
    index.insert(index.end(), row.begin(), row.end());
  }
  return index;
}

struct ConvCase {
  int64_t batch, K, dim, T, L, taps;
  bool bias, silu;
};

template <typename S>
void check_conv(const ConvCase& c) {
  std::mt19937 g(7);
  const int64_t row = c.dim + 3;  // x rows are strided (a view into wider rows)
  const auto index = random_index(c.K, c.L, c.T, g);
  const auto x = randn(c.batch * c.T * row, g), w = randn(c.K * c.taps * c.dim, g, 0.5), b = randn(c.K * c.dim, g);
  std::vector<double> ref(c.batch * c.K * c.L * c.dim);
  for (int64_t bb = 0; bb < c.batch; ++bb)
    for (int64_t k = 0; k < c.K; ++k)
      for (int64_t t = 0; t < c.L; ++t)
        for (int64_t d = 0; d < c.dim; ++d) {
          double acc = c.bias ? b[k * c.dim + d] : 0.0;
          for (int64_t j = 0; j < c.taps; ++j) {
            const int64_t s = t - c.taps + 1 + j;
            if (s < 0 || index[k * c.L + s] < 0) continue;
            acc += w[(k * c.taps + j) * c.dim + d] * x[(bb * c.T + index[k * c.L + s]) * row + d];
          }
          ref[((bb * c.K + k) * c.L + t) * c.dim + d] = c.silu ? silu(acc) : acc;
        }
  const auto xs = cast<S>(x), ws = cast<S>(w), bs = cast<S>(b);
  std::vector<S> out(ref.size(), S(-7));
  lm::ScanConvInferParams p;
  p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
  p.batch = c.batch, p.num_directions = c.K, p.dim = c.dim, p.length = c.L, p.num_tokens = c.T, p.taps = c.taps;
  p.silu = c.silu, p.index = index.data();
  p.x = xs.data(), p.x_stride_batch = c.T * row, p.x_stride_token = row;
  p.weight = ws.data(), p.weight_stride_direction = c.taps * c.dim, p.weight_stride_tap = c.dim;
  p.bias = c.bias ? bs.data() : nullptr, p.bias_stride_direction = c.dim;
  p.out = out.data(), p.out_stride_batch = c.K * c.L * c.dim, p.out_stride_direction = c.L * c.dim;
  p.out_stride_step = c.dim;
  lm::scan_conv_infer_cpu(p);
  expect_close(out, ref, "scan_conv_infer");
}

struct GateCase {
  int64_t batch, K, dim, T;
};

// y rows with a stride of dim + 2 (strided views), filled with random data.
std::vector<double> gate_y(const GateCase& c, std::mt19937& g) { return randn(c.batch * c.K * c.T * (c.dim + 2), g, 2.0, 0.5); }

void ref_moments(const double* row, int64_t n, double eps, double* mu, double* rstd) {
  double s = 0, v = 0;
  for (int64_t i = 0; i < n; ++i) s += row[i];
  *mu = s / n;
  for (int64_t i = 0; i < n; ++i) v += (row[i] - *mu) * (row[i] - *mu);
  *rstd = 1.0 / std::sqrt(v / n + eps);
}

template <typename S>
void check_gate_stats(const GateCase& c) {
  std::mt19937 g(11);
  const int64_t row = c.dim + 2;
  const auto y = gate_y(c, g);
  std::vector<double> ref(c.batch * c.K * c.dim, 0.0);
  for (int64_t bk = 0; bk < c.batch * c.K; ++bk)
    for (int64_t t = 0; t < c.T; ++t) {
      const double* r = &y[(bk * c.T + t) * row];
      double mu, rstd;
      ref_moments(r, c.dim, 1e-5, &mu, &rstd);
      for (int64_t d = 0; d < c.dim; ++d) ref[bk * c.dim + d] += (r[d] - mu) * rstd / c.T;
    }
  const auto ys = cast<S>(y);
  std::vector<S> out(ref.size(), S(-7));
  lm::GateStatsInferParams p;
  p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
  p.batch = c.batch, p.num_directions = c.K, p.dim = c.dim, p.num_tokens = c.T, p.eps = 1e-5;
  p.y = ys.data(), p.y_stride_batch = c.K * c.T * row, p.y_stride_direction = c.T * row, p.y_stride_token = row;
  p.out = out.data(), p.out_stride_batch = c.K * c.dim, p.out_stride_direction = c.dim;
  std::vector<S> ws(lm::gate_stats_infer_workspace_elements(p));
  p.workspace = ws.data(), p.workspace_elements = static_cast<int64_t>(ws.size());
  lm::gate_stats_infer_cpu(p);
  expect_close(out, ref, "gate_stats_infer");
}

template <typename S>
void check_gated_merge(const GateCase& c, bool normalize, bool with_z, bool z_silu) {
  std::mt19937 g(13);
  const int64_t row = c.dim + 2;
  const auto y = gate_y(c, g), gate = randn(c.batch * c.K * c.dim, g, 0.3, 0.5);
  const auto nw = randn(c.dim, g), nb = randn(c.dim, g), z = randn(c.batch * c.T * c.dim, g);
  std::vector<double> ref(c.batch * c.T * c.dim);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t t = 0; t < c.T; ++t) {
      double* m = &ref[(b * c.T + t) * c.dim];
      for (int64_t d = 0; d < c.dim; ++d) {
        m[d] = 0;
        for (int64_t k = 0; k < c.K; ++k) m[d] += gate[(b * c.K + k) * c.dim + d] * y[((b * c.K + k) * c.T + t) * row + d];
      }
      double mu = 0, rstd = 1;
      if (normalize) ref_moments(m, c.dim, 1e-5, &mu, &rstd);
      for (int64_t d = 0; d < c.dim; ++d) {
        if (normalize) m[d] = (m[d] - mu) * rstd * nw[d] + nb[d];
        const double zv = z[(b * c.T + t) * c.dim + d];
        if (with_z) m[d] *= z_silu ? silu(zv) : zv;
      }
    }
  const auto ys = cast<S>(y), gs = cast<S>(gate), nws = cast<S>(nw), nbs = cast<S>(nb), zs = cast<S>(z);
  std::vector<S> out(ref.size(), S(-7));
  lm::GatedMergeInferParams p;
  p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
  p.batch = c.batch, p.num_directions = c.K, p.dim = c.dim, p.num_tokens = c.T;
  p.y = ys.data(), p.y_stride_batch = c.K * c.T * row, p.y_stride_direction = c.T * row, p.y_stride_token = row;
  p.gate = gs.data(), p.gate_stride_batch = c.K * c.dim, p.gate_stride_direction = c.dim;
  p.normalize = normalize, p.eps = 1e-5, p.norm_weight = nws.data(), p.norm_bias = nbs.data();
  p.z = with_z ? zs.data() : nullptr, p.z_stride_batch = c.T * c.dim, p.z_stride_token = c.dim, p.z_silu = z_silu;
  p.out = out.data(), p.out_stride_batch = c.T * c.dim, p.out_stride_token = c.dim;
  lm::gated_merge_infer_cpu(p);
  expect_close(out, ref, "gated_merge_infer");
}

}  // namespace

TEST(MixerInfer, ScanConvMatchesReference) {
  for (const ConvCase& c : {ConvCase{3, 4, 37, 29, 33, 4, true, true}, ConvCase{2, 1, 16, 5, 5, 1, false, false},
                            ConvCase{1, 2, 3, 1, 4, 3, true, false}, ConvCase{2, 3, 70, 40, 70, 4, false, true}}) {
    check_conv<float>(c);
    check_conv<double>(c);
  }
}

TEST(MixerInfer, GateStatsMatchesReference) {
  for (const GateCase& c : {GateCase{2, 3, 37, 45}, GateCase{1, 1, 5, 1}, GateCase{3, 2, 64, 33}}) {
    check_gate_stats<float>(c);
    check_gate_stats<double>(c);
  }
}

TEST(MixerInfer, GatedMergeMatchesReference) {
  for (const GateCase& c : {GateCase{2, 3, 37, 21}, GateCase{1, 1, 1, 1}, GateCase{2, 4, 48, 17}})
    for (int mode = 0; mode < 8; ++mode) {
      check_gated_merge<float>(c, mode & 1, mode & 2, mode & 4);
      check_gated_merge<double>(c, mode & 1, mode & 2, mode & 4);
    }
}

TEST(MixerInfer, ResultsDoNotDependOnThreadCount) {
  std::mt19937 g(5);
  const int64_t B = 5, K = 3, D = 37, T = 70;
  const auto index = random_index(K, T, T, g);
  const auto x = cast<float>(randn(B * T * D, g)), w = cast<float>(randn(K * 4 * D, g));
  const auto y = cast<float>(randn(B * K * T * D, g)), gate = cast<float>(randn(B * K * D, g));
  auto run = [&]() {
    std::vector<float> conv(B * K * T * D), stats(B * K * D), merged(B * T * D), ws;
    lm::ScanConvInferParams c;
    c.batch = B, c.num_directions = K, c.dim = D, c.length = T, c.num_tokens = T, c.taps = 4, c.index = index.data();
    c.x = x.data(), c.x_stride_batch = T * D, c.x_stride_token = D;
    c.weight = w.data(), c.weight_stride_direction = 4 * D, c.weight_stride_tap = D;
    c.out = conv.data(), c.out_stride_batch = K * T * D, c.out_stride_direction = T * D, c.out_stride_step = D;
    lm::scan_conv_infer_cpu(c);
    lm::GateStatsInferParams s;
    s.batch = B, s.num_directions = K, s.dim = D, s.num_tokens = T;
    s.y = y.data(), s.y_stride_batch = K * T * D, s.y_stride_direction = T * D, s.y_stride_token = D;
    s.out = stats.data(), s.out_stride_batch = K * D, s.out_stride_direction = D;
    ws.resize(lm::gate_stats_infer_workspace_elements(s));
    s.workspace = ws.data(), s.workspace_elements = static_cast<int64_t>(ws.size());
    lm::gate_stats_infer_cpu(s);
    lm::GatedMergeInferParams m;
    m.batch = B, m.num_directions = K, m.dim = D, m.num_tokens = T;
    m.y = y.data(), m.y_stride_batch = K * T * D, m.y_stride_direction = T * D, m.y_stride_token = D;
    m.gate = gate.data(), m.gate_stride_batch = K * D, m.gate_stride_direction = D;
    m.z = x.data(), m.z_stride_batch = T * D, m.z_stride_token = D, m.z_silu = true;
    m.out = merged.data(), m.out_stride_batch = T * D, m.out_stride_token = D;
    lm::gated_merge_infer_cpu(m);
    return std::vector<std::vector<float>>{conv, stats, merged};
  };
  const int before = lm::get_num_threads();
  lm::set_num_threads(1);
  const auto one = run();
  for (int n : {2, 3, 8}) {
    lm::set_num_threads(n);
    EXPECT_EQ(run(), one) << n << " threads";
  }
  lm::set_num_threads(before);
}

TEST(MixerInfer, RejectsBadArguments) {
  lm::ScanConvInferParams c;
  c.batch = 1, c.num_directions = 1, c.dim = 4, c.length = 2, c.num_tokens = 2, c.taps = 17;
  EXPECT_THROW(lm::scan_conv_infer_cpu(c), std::invalid_argument);  // taps out of range
  c.taps = 4;
  EXPECT_THROW(lm::scan_conv_infer_cpu(c), std::invalid_argument);  // null pointers
  lm::GateStatsInferParams s;
  s.batch = 1, s.num_directions = 1, s.dim = 4, s.num_tokens = 3;
  std::vector<float> y(12), out(4);
  s.y = y.data(), s.out = out.data();
  EXPECT_THROW(lm::gate_stats_infer_cpu(s), std::invalid_argument);  // no workspace
  lm::GatedMergeInferParams m;
  m.batch = 1, m.num_directions = 1, m.dim = 4, m.num_tokens = 3, m.y = y.data(), m.gate = out.data();
  m.out = y.data(), m.normalize = true;
  EXPECT_THROW(lm::gated_merge_infer_cpu(m), std::invalid_argument);  // normalize without weight / bias
  m.normalize = false, m.dtype = lm::DType::kFloat16;
  EXPECT_THROW(lm::gated_merge_infer_cpu(m), std::invalid_argument);
}
