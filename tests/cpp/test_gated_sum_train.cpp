// The gated sum's backward passes (gated_sum_train.h) against scalar float64 references written
// straight from the contract, on random non-zero data with odd sizes (channel tails that fill no
// vector, partial token blocks, one token), bit-identical for 1, 2 and 3 threads, and the errors.
// Tolerance: rows_test_util.h (float64 1e-10 relative to max|ref|; float32 1e-3 * max|ref| + 3e-4 |ref|).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/gated_sum_train.h"
#include "localmamba/parallel.h"
#include "rows_test_util.h"

namespace lm = localmamba;

namespace {

using rows_test::cast;
using rows_test::expect_close;
using rows_test::randn;

struct Case {
  int64_t batch, K, T, C;
};

struct Data {
  std::vector<double> y, dout, gate, e;
};

Data random_data(const Case& c) {
  std::mt19937 g(11);
  Data d;
  d.y = randn(c.batch * c.K * c.T * c.C, g, 1.5, 0.4);
  d.dout = randn(c.batch * c.T * c.C, g);
  d.gate = randn(c.batch * c.K * c.C, g, 0.3, 0.5);
  d.e = randn(c.batch * c.K * c.C, g, 0.2);
  return d;
}

template <typename S>
lm::GatedSumTrainParams params(const Case& c, const std::vector<S>& y, const std::vector<S>& dout, void* out) {
  lm::GatedSumTrainParams p;
  p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
  p.batch = c.batch, p.num_directions = c.K, p.dim = c.C, p.num_tokens = c.T, p.eps = 1e-5;
  p.y = y.data(), p.y_stride_batch = c.K * c.T * c.C, p.y_stride_direction = c.T * c.C, p.y_stride_token = c.C;
  p.dout = dout.data(), p.dout_stride_batch = c.T * c.C, p.dout_stride_token = c.C;
  p.out = out;
  return p;
}

template <typename S>
std::vector<S> run_gate_grad(const Case& c, const Data& d) {
  const auto y = cast<S>(d.y), dout = cast<S>(d.dout);
  std::vector<S> ds(c.batch * c.K * c.C);
  auto p = params<S>(c, y, dout, ds.data());
  p.out_stride_batch = c.K * c.C, p.out_stride_direction = c.C;
  std::vector<S> ws(lm::gated_sum_train_workspace_elements(p));
  p.workspace = ws.data(), p.workspace_elements = static_cast<int64_t>(ws.size());
  lm::gate_grad_cpu(p);
  return ds;
}

template <typename S>
std::vector<S> run_bwd_y(const Case& c, const Data& d) {
  const auto y = cast<S>(d.y), dout = cast<S>(d.dout), gate = cast<S>(d.gate), e = cast<S>(d.e);
  std::vector<S> dy(y.size());
  auto p = params<S>(c, y, dout, dy.data());
  p.gate = gate.data(), p.gate_stride_batch = c.K * c.C, p.gate_stride_direction = c.C;
  p.token_grad = e.data(), p.token_grad_stride_batch = c.K * c.C, p.token_grad_stride_direction = c.C;
  p.out_stride_batch = c.K * c.T * c.C, p.out_stride_direction = c.T * c.C, p.out_stride_token = c.C;
  lm::gated_sum_bwd_y_cpu(p);
  return dy;
}

std::vector<double> ref_gate_grad(const Case& c, const Data& d) {
  std::vector<double> ds(c.batch * c.K * c.C, 0.0);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < c.K; ++k)
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t ch = 0; ch < c.C; ++ch)
          ds[(b * c.K + k) * c.C + ch] += d.dout[(b * c.T + t) * c.C + ch] * d.y[((b * c.K + k) * c.T + t) * c.C + ch];
  return ds;
}

// dy = dout * gate + the LayerNorm backward of a gradient e constant over the tokens.
std::vector<double> ref_bwd_y(const Case& c, const Data& d) {
  std::vector<double> dy(d.y.size());
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < c.K; ++k) {
      const double* e = &d.e[(b * c.K + k) * c.C];
      double e_mean = 0;
      for (int64_t ch = 0; ch < c.C; ++ch) e_mean += e[ch] / c.C;
      for (int64_t t = 0; t < c.T; ++t) {
        const double* y = &d.y[((b * c.K + k) * c.T + t) * c.C];
        double mu = 0, var = 0;
        for (int64_t ch = 0; ch < c.C; ++ch) mu += y[ch] / c.C;
        for (int64_t ch = 0; ch < c.C; ++ch) var += (y[ch] - mu) * (y[ch] - mu) / c.C;
        const double rstd = 1 / std::sqrt(var + 1e-5);
        double dot = 0;  // mean_c e_c xhat_c
        for (int64_t ch = 0; ch < c.C; ++ch) dot += e[ch] * (y[ch] - mu) * rstd / c.C;
        for (int64_t ch = 0; ch < c.C; ++ch) {
          const double xhat = (y[ch] - mu) * rstd;
          dy[((b * c.K + k) * c.T + t) * c.C + ch] =
              d.dout[(b * c.T + t) * c.C + ch] * d.gate[(b * c.K + k) * c.C + ch] + rstd * (e[ch] - e_mean - xhat * dot);
        }
      }
    }
  return dy;
}

const Case kCases[] = {{3, 4, 23, 37}, {1, 1, 1, 16}, {2, 2, 70, 96}, {2, 3, 33, 5}};

TEST(GatedSumTrain, MatchesTheFloat64References) {
  for (const Case& c : kCases) {
    const Data d = random_data(c);
    expect_close(run_gate_grad<double>(c, d), ref_gate_grad(c, d), "gate_grad f64");
    expect_close(run_gate_grad<float>(c, d), ref_gate_grad(c, d), "gate_grad f32");
    expect_close(run_bwd_y<double>(c, d), ref_bwd_y(c, d), "gated_sum_bwd_y f64");
    expect_close(run_bwd_y<float>(c, d), ref_bwd_y(c, d), "gated_sum_bwd_y f32");
  }
}

TEST(GatedSumTrain, BitIdenticalForAnyThreadCount) {
  const Case c{5, 4, 70, 37};
  const Data d = random_data(c);
  const int before = lm::get_num_threads();
  std::vector<std::vector<float>> ds, dy;
  for (int threads : {1, 2, 3}) {
    lm::set_num_threads(threads);
    ds.push_back(run_gate_grad<float>(c, d));
    dy.push_back(run_bwd_y<float>(c, d));
  }
  lm::set_num_threads(before);
  for (size_t i = 1; i < ds.size(); ++i) {
    EXPECT_EQ(ds[i], ds[0]);
    EXPECT_EQ(dy[i], dy[0]);
  }
}

TEST(GatedSumTrain, RejectsBadParams) {
  const Case c{2, 2, 5, 8};
  const Data d = random_data(c);
  const auto y = cast<float>(d.y), dout = cast<float>(d.dout);
  std::vector<float> out(y.size());
  auto p = params<float>(c, y, dout, out.data());
  EXPECT_THROW(lm::gate_grad_cpu(p), std::invalid_argument);  // no workspace
  EXPECT_THROW(lm::gated_sum_bwd_y_cpu(p), std::invalid_argument);  // no gate / token_grad
  p.num_tokens = 0;
  EXPECT_THROW(lm::check_gate_grad_params(p), std::invalid_argument);
  p.num_tokens = c.T, p.dtype = lm::DType::kFloat16;
  EXPECT_THROW(lm::check_gated_sum_bwd_y_params(p), std::invalid_argument);
}

}  // namespace
