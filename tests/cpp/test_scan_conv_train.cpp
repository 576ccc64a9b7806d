// scan_conv_infer's backward (scan_conv_train.h) against a scalar float64 reference written straight
// from the contract, on random non-zero data with odd sizes: channel tails that fill no vector,
// padding steps, tokens read by no direction or several times by one, channel segments with a
// tail, strided x rows, both layouts of the output gradient, with and without bias and SiLU;
// bit-identical for 1, 2 and 3 threads; the errors of a bad call.
// Tolerance: rows_test_util.h (float64 1e-10 relative to max|ref|; float32 1e-3 * max|ref| + 3e-4 |ref|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/parallel.h"
#include "rows_test_util.h"
#include "localmamba/scan_conv_train.h"

namespace lm = localmamba;

namespace {

using rows_test::cast;
using rows_test::expect_close;
using rows_test::randn;

// K directions of L steps over T tokens: each direction reads a random subset of the tokens once
// each (so some tokens are read by no direction), the other steps are padding (-1); with `repeats`,
// every step reads a random token or is padding, so a direction may read a token several times.
std::vector<int64_t> random_index(int64_t K, int64_t L, int64_t T, bool repeats, std::mt19937& g) {
  std::vector<int64_t> index;
  std::uniform_int_distribution<int64_t> any(-1, T - 1);
  for (int64_t k = 0; k < K; ++k) {
    std::vector<int64_t> tokens(T);
    std::iota(tokens.begin(), tokens.end(), 0);
    std::shuffle(tokens.begin(), tokens.end(), g);
    std::vector<int64_t> row(L, -1);
    std::copy_n(tokens.begin(), std::min(T, L - L / 4), row.begin());
    std::shuffle(row.begin(), row.end(), g);
    if (repeats)
      for (auto& v : row) v = any(g);
    index.insert(index.end(), row.begin(), row.end());
  }
  return index;
}

struct Case {
  int64_t batch, K, dim, T, L, taps;
  bool bias, silu, direction_major, repeats = false;
};

// Inputs of a case: x rows strided (a view into rows of dim + 3), dout in either layout.
struct Inputs {
  std::vector<int64_t> index;
  std::vector<double> x, w, b, dout;
  int64_t row;
};

Inputs make_inputs(const Case& c, unsigned seed) {
  std::mt19937 g(seed);
  Inputs in;
  in.row = c.dim + 3;
  in.index = random_index(c.K, c.L, c.T, c.repeats, g);
  in.x = randn(c.batch * c.T * in.row, g);
  in.w = randn(c.K * c.taps * c.dim, g, 0.5);
  in.b = randn(c.K * c.dim, g);
  in.dout = randn(c.batch * c.K * c.L * c.dim, g);
  return in;
}

// dout element (b, k, t, d) in the case's layout: (K, B, L, dim) memory when direction_major.
int64_t dout_at(const Case& c, int64_t b, int64_t k, int64_t t, int64_t d) {
  return c.direction_major ? ((k * c.batch + b) * c.L + t) * c.dim + d : ((b * c.K + k) * c.L + t) * c.dim + d;
}

struct Grads {
  std::vector<double> dx, dw, db;
};

Grads reference(const Case& c, const Inputs& in) {
  Grads r{std::vector<double>(c.batch * c.T * c.dim, 0.0), std::vector<double>(c.K * c.taps * c.dim, 0.0),
          std::vector<double>(c.K * c.dim, 0.0)};
  auto tok_at = [&](int64_t k, int64_t s) { return s < 0 ? -1 : in.index[k * c.L + s]; };
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < c.K; ++k)
      for (int64_t t = 0; t < c.L; ++t)
        for (int64_t d = 0; d < c.dim; ++d) {
          double pre = c.bias ? in.b[k * c.dim + d] : 0.0;
          for (int64_t j = 0; j < c.taps; ++j) {
            const int64_t tok = tok_at(k, t - c.taps + 1 + j);
            if (tok >= 0) pre += in.w[(k * c.taps + j) * c.dim + d] * in.x[(b * c.T + tok) * in.row + d];
          }
          const double sig = 1.0 / (1.0 + std::exp(-pre));
          const double dpre = in.dout[dout_at(c, b, k, t, d)] * (c.silu ? sig * (1 + pre * (1 - sig)) : 1.0);
          r.db[k * c.dim + d] += dpre;
          for (int64_t j = 0; j < c.taps; ++j) {
            const int64_t tok = tok_at(k, t - c.taps + 1 + j);
            if (tok < 0) continue;
            r.dw[(k * c.taps + j) * c.dim + d] += dpre * in.x[(b * c.T + tok) * in.row + d];
            r.dx[(b * c.T + tok) * c.dim + d] += dpre * in.w[(k * c.taps + j) * c.dim + d];
          }
        }
  return r;
}

template <typename S>
struct Call {
  std::vector<S> x, w, b, dout, dx, dw, db;
  std::vector<int64_t> index;
  std::vector<unsigned char> workspace_storage;
  lm::ScanConvInferParams p;
  lm::ScanConvTrainGrads g;

  Call(const Case& c, const Inputs& in)
      : x(cast<S>(in.x)), w(cast<S>(in.w)), b(cast<S>(in.b)), dout(cast<S>(in.dout)),
        dx(c.batch * c.T * c.dim, S(-7)), dw(c.K * c.taps * c.dim, S(-7)), db(c.K * c.dim, S(-7)), index(in.index) {
    p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
    p.batch = c.batch, p.num_directions = c.K, p.dim = c.dim, p.length = c.L, p.num_tokens = c.T, p.taps = c.taps;
    p.silu = c.silu, p.index = index.data();
    p.x = x.data(), p.x_stride_batch = c.T * in.row, p.x_stride_token = in.row;
    p.weight = w.data(), p.weight_stride_direction = c.taps * c.dim, p.weight_stride_tap = c.dim;
    p.bias = c.bias ? b.data() : nullptr, p.bias_stride_direction = c.dim;
    g.dout = dout.data(), g.dout_stride_step = c.dim;
    g.dout_stride_batch = c.direction_major ? c.L * c.dim : c.K * c.L * c.dim;
    g.dout_stride_direction = c.direction_major ? c.batch * c.L * c.dim : c.L * c.dim;
    g.dx = dx.data(), g.dx_stride_batch = c.T * c.dim, g.dx_stride_token = c.dim;
    g.dweight = dw.data(), g.dweight_stride_direction = c.taps * c.dim, g.dweight_stride_tap = c.dim;
    g.dbias = c.bias ? db.data() : nullptr, g.dbias_stride_direction = c.dim;
    const int64_t bytes = lm::scan_conv_train_workspace_bytes(p);
    workspace_storage.assign(bytes + 64, 0);
    auto address = reinterpret_cast<uintptr_t>(workspace_storage.data());
    g.workspace = workspace_storage.data() + (64 - address % 64) % 64, g.workspace_bytes = bytes;
  }
  void run() { lm::scan_conv_train_bwd_cpu(p, g); }
};

template <typename S>
void check(const Case& c) {
  const Inputs in = make_inputs(c, 17);
  const Grads ref = reference(c, in);
  Call<S> call(c, in);
  call.run();
  expect_close(call.dx, ref.dx, "dx");
  expect_close(call.dw, ref.dw, "dweight");
  if (c.bias) expect_close(call.db, ref.db, "dbias");
  else EXPECT_TRUE(std::all_of(call.db.begin(), call.db.end(), [](S v) { return v == S(-7); })) << "dbias written";
}

}  // namespace

TEST(ScanConvTrain, GradientsMatchReference) {
  for (const Case& c : {Case{3, 4, 37, 29, 41, 4, true, true, true}, Case{2, 1, 16, 5, 5, 1, false, false, false},
                        Case{1, 2, 3, 1, 4, 3, true, false, true}, Case{2, 3, 70, 40, 70, 5, false, true, false},
                        Case{1, 1, 19, 33, 33, 2, true, true, false}, Case{2, 2, 9, 3, 2, 4, true, true, true},
                        Case{2, 3, 21, 7, 19, 4, true, true, false, true}, Case{1, 2, 100, 9, 12, 3, false, true, true, true}}) {
    check<float>(c);
    check<double>(c);
  }
}

TEST(ScanConvTrain, WiderDxRowsGetZerosPastDim) {
  for (const Case& c : {Case{2, 3, 37, 11, 13, 4, true, true, false}, Case{1, 2, 8, 5, 5, 3, false, true, true}}) {
    const Inputs in = make_inputs(c, 23);
    const Grads ref = reference(c, in);
    const int64_t wide = 2 * c.dim + 3;
    Call<float> call(c, in);
    std::vector<float> dx(c.batch * c.T * wide, -7.0f);
    call.g.dx = dx.data(), call.g.dx_stride_batch = c.T * wide, call.g.dx_stride_token = wide, call.g.dx_channels = wide;
    call.run();
    std::vector<float> first(c.batch * c.T * c.dim);
    for (int64_t r = 0; r < c.batch * c.T; ++r)
      for (int64_t d = 0; d < wide; ++d) {
        if (d < c.dim) first[r * c.dim + d] = dx[r * wide + d];
        else ASSERT_EQ(dx[r * wide + d], 0.0f) << "row " << r << " channel " << d;
      }
    expect_close(first, ref.dx, "dx (wide rows)");
  }
}

TEST(ScanConvTrain, SegmentsDependOnTheShapesOnly) {
  auto params = [](int64_t batch, int64_t dim) {
    lm::ScanConvInferParams p;
    p.batch = batch, p.num_directions = 4, p.dim = dim, p.length = 64, p.num_tokens = 64, p.taps = 4;
    return p;
  };
  EXPECT_EQ(lm::scan_conv_train_units(params(64, 96)), 64);  // one segment of 96 channels each
  EXPECT_EQ(lm::scan_conv_train_segment_channels(params(8, 384)), 48);
  EXPECT_EQ(lm::scan_conv_train_units(params(8, 384)), 64);
  EXPECT_EQ(lm::scan_conv_train_units(params(1, 37)), 3);  // 16 + 16 + a 5-channel tail
  EXPECT_EQ(lm::scan_conv_train_reduce_units(params(8, 384)), 20);
}

TEST(ScanConvTrain, EmptyBatchGivesZeroParameterGradients) {
  const Case c{0, 2, 13, 4, 6, 3, true, true, false};
  const Inputs in = make_inputs(c, 3);
  Call<float> call(c, in);
  call.run();
  EXPECT_TRUE(std::all_of(call.dw.begin(), call.dw.end(), [](float v) { return v == 0.0f; }));
  EXPECT_TRUE(std::all_of(call.db.begin(), call.db.end(), [](float v) { return v == 0.0f; }));
}

TEST(ScanConvTrain, ResultsDoNotDependOnThreadCount) {
  const Case c{5, 4, 37, 61, 70, 4, true, true, true};
  const Inputs in = make_inputs(c, 5);
  auto run = [&]() {
    Call<float> call(c, in);
    call.run();
    return std::vector<std::vector<float>>{call.dx, call.dw, call.db};
  };
  const int before = lm::get_num_threads();
  lm::set_num_threads(1);
  const auto one = run();
  for (int n : {2, 3}) {
    lm::set_num_threads(n);
    EXPECT_EQ(run(), one) << n << " threads";
  }
  lm::set_num_threads(before);
}

TEST(ScanConvTrain, BadCallsThrow) {
  const Case c{2, 2, 8, 4, 5, 3, true, true, false};
  Inputs in = make_inputs(c, 9);
  {
    Call<float> call(c, in);
    call.g.workspace_bytes -= 1;
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
  {
    Call<float> call(c, in);
    call.g.dx = nullptr;
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
  {
    Call<float> call(c, in);
    call.p.bias = nullptr;  // dbias without a bias
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
  {
    Call<float> call(c, in);
    call.g.dx_channels = c.dim - 1;
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
  {
    Call<float> call(c, in);
    call.p.taps = lm::kScanConvMaxTaps + 1;
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
  in.index[0] = 4;  // outside [-1, T)
  {
    Call<float> call(c, in);
    EXPECT_THROW(call.run(), std::invalid_argument);
  }
}
