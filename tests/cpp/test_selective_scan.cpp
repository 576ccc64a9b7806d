// Selective scan C++ API against a scalar double reference (forward) and central finite
// differences of that reference (backward).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/dtype.h"
#include "localmamba/parallel.h"
#include "localmamba/selective_scan.h"

using localmamba::DType;
using localmamba::SelectiveScanGrads;
using localmamba::SelectiveScanParams;

namespace {

struct Problem {
  int64_t batch, dim, length, dstate, groups;
  bool softplus, with_z, with_D, with_bias, with_h0;
  std::vector<double> u, delta, A, B, C, D, z, bias, h0;  // contiguous; B, C (batch, groups, N, L)
};

Problem make_problem(int64_t batch, int64_t dim, int64_t length, int64_t dstate, int64_t groups, bool all,
                     unsigned seed) {
  Problem p{batch, dim, length, dstate, groups, all, all, all, all, all, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto fill = [&](std::vector<double>& v, int64_t n, int kind) {
    v.resize(static_cast<size_t>(n));
    for (auto& x : v) x = kind == 0 ? normal(gen) : kind == 1 ? 0.5 * uniform(gen) : -0.5 * uniform(gen) - 0.05;
  };
  fill(p.u, batch * dim * length, 0);
  fill(p.delta, batch * dim * length, 1);
  fill(p.A, dim * dstate, 2);
  fill(p.B, batch * groups * dstate * length, 0);
  fill(p.C, batch * groups * dstate * length, 0);
  fill(p.D, dim, 0);
  fill(p.z, batch * dim * length, 0);
  fill(p.bias, dim, 1);
  fill(p.h0, batch * dim * dstate, 0);
  return p;
}

// Scalar reference: returns sum(y * gy) + sum(last * gl) and fills y / last.
double reference(const Problem& p, std::vector<double>& y, std::vector<double>& last, const std::vector<double>* gy,
                 const std::vector<double>* gl) {
  y.assign(static_cast<size_t>(p.batch * p.dim * p.length), 0.0);
  last.assign(static_cast<size_t>(p.batch * p.dim * p.dstate), 0.0);
  double loss = 0;
  const int64_t per_group = p.dim / p.groups;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.dim; ++d) {
      const int64_t g = d / per_group;
      std::vector<double> h(static_cast<size_t>(p.dstate), 0.0);
      if (p.with_h0)
        for (int64_t n = 0; n < p.dstate; ++n) h[n] = p.h0[(b * p.dim + d) * p.dstate + n];
      for (int64_t t = 0; t < p.length; ++t) {
        const int64_t i = (b * p.dim + d) * p.length + t;
        double dl = p.delta[i] + (p.with_bias ? p.bias[d] : 0.0);
        if (p.softplus && dl <= 20.0) dl = std::log1p(std::exp(dl));
        double acc = 0;
        for (int64_t n = 0; n < p.dstate; ++n) {
          const int64_t bc = ((b * p.groups + g) * p.dstate + n) * p.length + t;
          h[n] = std::exp(dl * p.A[d * p.dstate + n]) * h[n] + dl * p.B[bc] * p.u[i];
          acc += p.C[bc] * h[n];
        }
        if (p.with_D) acc += p.D[d] * p.u[i];
        if (p.with_z) acc *= p.z[i] / (1.0 + std::exp(-p.z[i]));
        y[i] = acc;
        if (gy) loss += acc * (*gy)[i];
      }
      for (int64_t n = 0; n < p.dstate; ++n) {
        last[(b * p.dim + d) * p.dstate + n] = h[n];
        if (gl) loss += h[n] * (*gl)[(b * p.dim + d) * p.dstate + n];
      }
    }
  }
  return loss;
}

SelectiveScanParams params_for(const Problem& p, int64_t chunk) {
  SelectiveScanParams s;
  s.dtype = DType::kFloat64;
  s.bc_dtype = DType::kFloat64;
  s.batch = p.batch, s.dim = p.dim, s.length = p.length, s.dstate = p.dstate, s.n_groups = p.groups;
  s.chunk_size = chunk;
  s.delta_softplus = p.softplus;
  s.u = p.u.data(), s.u_stride_batch = p.dim * p.length, s.u_stride_dim = p.length;
  s.delta = p.delta.data(), s.delta_stride_batch = p.dim * p.length, s.delta_stride_dim = p.length;
  s.A = p.A.data(), s.A_stride_dim = p.dstate, s.A_stride_state = 1;
  s.B = p.B.data(), s.B_stride_batch = p.groups * p.dstate * p.length, s.B_stride_group = p.dstate * p.length;
  s.B_stride_state = p.length;
  s.C = p.C.data(), s.C_stride_batch = s.B_stride_batch, s.C_stride_group = s.B_stride_group;
  s.C_stride_state = p.length;
  if (p.with_D) s.D = p.D.data(), s.D_stride = 1;
  if (p.with_z) s.z = p.z.data(), s.z_stride_batch = p.dim * p.length, s.z_stride_dim = p.length;
  if (p.with_bias) s.delta_bias = p.bias.data(), s.delta_bias_stride = 1;
  if (p.with_h0) {
    s.initial_state = p.h0.data();
    s.initial_state_stride_batch = p.dim * p.dstate, s.initial_state_stride_dim = p.dstate;
    s.initial_state_stride_state = 1;
  }
  return s;
}

void expect_near_all(const std::vector<double>& a, const std::vector<double>& e, double tol, const char* what) {
  ASSERT_EQ(a.size(), e.size()) << what;
  double scale = 1e-30;
  for (double v : e) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], e[i], tol * scale) << what << " at " << i;
}

}  // namespace

TEST(SelectiveScanCpu, ForwardMatchesScalarReference) {
  for (bool all : {false, true}) {
    for (int64_t chunk : {1, 5, 64}) {
      Problem p = make_problem(2, 6, 37, 5, all ? 2 : 1, all, 11);
      std::vector<double> y_ref, last_ref;
      reference(p, y_ref, last_ref, nullptr, nullptr);
      SelectiveScanParams s = params_for(p, chunk);
      std::vector<double> y(y_ref.size()), last(last_ref.size());
      std::vector<double> saved(static_cast<size_t>(localmamba::selective_scan_chunk_states_numel(s)));
      s.out = y.data(), s.out_stride_batch = p.dim * p.length, s.out_stride_dim = p.length;
      s.last_state = last.data(), s.last_state_stride_batch = p.dim * p.dstate, s.last_state_stride_dim = p.dstate;
      s.last_state_stride_state = 1;
      s.chunk_states = saved.data();
      localmamba::selective_scan_fwd_cpu(s);
      expect_near_all(y, y_ref, 1e-12, "y");
      expect_near_all(last, last_ref, 1e-12, "last_state");
    }
  }
}

TEST(SelectiveScanCpu, BackwardMatchesFiniteDifferences) {
  Problem p = make_problem(2, 4, 23, 3, 2, true, 5);
  const int64_t chunk = 8;  // several chunks, ragged tail
  std::mt19937 gen(3);
  std::normal_distribution<double> normal;
  std::vector<double> gy(p.u.size()), gl(p.h0.size());
  for (auto& v : gy) v = normal(gen);
  for (auto& v : gl) v = normal(gen);

  SelectiveScanParams s = params_for(p, chunk);
  std::vector<double> y(p.u.size()), saved(static_cast<size_t>(localmamba::selective_scan_chunk_states_numel(s)));
  s.out = y.data(), s.out_stride_batch = p.dim * p.length, s.out_stride_dim = p.length;
  s.chunk_states = saved.data();
  localmamba::selective_scan_fwd_cpu(s);

  std::vector<double> du(p.u.size()), ddelta(p.u.size()), dz(p.u.size()), dA(p.A.size()), dB(p.B.size()),
      dC(p.C.size()), dD(p.D.size()), dbias(p.bias.size()), dh0(p.h0.size());
  SelectiveScanGrads g;
  g.dout = gy.data(), g.dout_stride_batch = p.dim * p.length, g.dout_stride_dim = p.length;
  g.dlast_state = gl.data(), g.dlast_state_stride_batch = p.dim * p.dstate, g.dlast_state_stride_dim = p.dstate;
  g.dlast_state_stride_state = 1;
  g.du = du.data(), g.du_stride_batch = p.dim * p.length, g.du_stride_dim = p.length;
  g.ddelta = ddelta.data(), g.ddelta_stride_batch = p.dim * p.length, g.ddelta_stride_dim = p.length;
  g.dz = dz.data(), g.dz_stride_batch = p.dim * p.length, g.dz_stride_dim = p.length;
  g.dA = dA.data(), g.dA_stride_dim = p.dstate, g.dA_stride_state = 1;
  g.dB = dB.data(), g.dB_stride_batch = s.B_stride_batch, g.dB_stride_group = s.B_stride_group;
  g.dB_stride_state = p.length;
  g.dC = dC.data(), g.dC_stride_batch = s.C_stride_batch, g.dC_stride_group = s.C_stride_group;
  g.dC_stride_state = p.length;
  g.dD = dD.data(), g.dD_stride = 1;
  g.ddelta_bias = dbias.data(), g.ddelta_bias_stride = 1;
  g.dinitial_state = dh0.data(), g.dinitial_state_stride_batch = p.dim * p.dstate;
  g.dinitial_state_stride_dim = p.dstate, g.dinitial_state_stride_state = 1;
  localmamba::selective_scan_bwd_cpu(s, g);

  std::vector<double> yy, ll;
  auto fd = [&](std::vector<double>& x, const std::vector<double>& grad, const char* what) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double keep = x[i], h = 1e-6;
      x[i] = keep + h;
      const double up = reference(p, yy, ll, &gy, &gl);
      x[i] = keep - h;
      const double down = reference(p, yy, ll, &gy, &gl);
      x[i] = keep;
      const double expected = (up - down) / (2 * h);
      ASSERT_NEAR(grad[i], expected, 1e-6 * (1 + std::abs(expected))) << what << "[" << i << "]";
    }
  };
  fd(p.u, du, "du");
  fd(p.delta, ddelta, "ddelta");
  fd(p.z, dz, "dz");
  fd(p.A, dA, "dA");
  fd(p.B, dB, "dB");
  fd(p.C, dC, "dC");
  fd(p.D, dD, "dD");
  fd(p.bias, dbias, "ddelta_bias");
  fd(p.h0, dh0, "dinitial_state");
}

TEST(SelectiveScanCpu, Float32ResultsIndependentOfThreadCount) {
  Problem p = make_problem(2, 64, 150, 16, 2, true, 9);
  auto run = [&](int threads) {
    localmamba::set_num_threads(threads);
    std::vector<float> u(p.u.begin(), p.u.end()), delta(p.delta.begin(), p.delta.end()), B(p.B.begin(), p.B.end()),
        C(p.C.begin(), p.C.end()), z(p.z.begin(), p.z.end()), A(p.A.begin(), p.A.end()), D(p.D.begin(), p.D.end());
    SelectiveScanParams s = params_for(p, 64);
    s.dtype = s.bc_dtype = DType::kFloat32;
    s.u = u.data(), s.delta = delta.data(), s.B = B.data(), s.C = C.data(), s.z = z.data(), s.A = A.data();
    s.D = D.data(), s.delta_bias = nullptr, s.initial_state = nullptr;
    std::vector<float> y(u.size()), saved(static_cast<size_t>(localmamba::selective_scan_chunk_states_numel(s)));
    s.out = y.data(), s.out_stride_batch = p.dim * p.length, s.out_stride_dim = p.length;
    s.chunk_states = saved.data();
    localmamba::selective_scan_fwd_cpu(s);
    std::vector<float> du(u.size()), dB(B.size()), dA(A.size());
    SelectiveScanGrads g;
    g.dout = y.data(), g.dout_stride_batch = p.dim * p.length, g.dout_stride_dim = p.length;
    g.du = du.data(), g.du_stride_batch = p.dim * p.length, g.du_stride_dim = p.length;
    g.dB = dB.data(), g.dB_stride_batch = s.B_stride_batch, g.dB_stride_group = s.B_stride_group;
    g.dB_stride_state = p.length;
    g.dA = dA.data(), g.dA_stride_dim = p.dstate, g.dA_stride_state = 1;
    localmamba::selective_scan_bwd_cpu(s, g);
    y.insert(y.end(), du.begin(), du.end());
    y.insert(y.end(), dB.begin(), dB.end());
    y.insert(y.end(), dA.begin(), dA.end());
    return y;
  };
  const int old = localmamba::get_num_threads();
  const std::vector<float> one = run(1);
  EXPECT_EQ(one, run(2));
  EXPECT_EQ(one, run(5));
  localmamba::set_num_threads(old);
}

TEST(SelectiveScanCpu, RejectsBadParams) {
  Problem p = make_problem(1, 4, 5, 3, 1, false, 1);
  SelectiveScanParams s = params_for(p, 64);
  std::vector<double> y(p.u.size());
  s.out = y.data();
  auto expect_error = [&](SelectiveScanParams bad, const char* fragment) {
    try {
      localmamba::selective_scan_fwd_cpu(bad);
      FAIL() << "expected an error mentioning " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  SelectiveScanParams bad = s;
  bad.dstate = 0;
  expect_error(bad, "dstate");
  bad = s;
  bad.dstate = 1000;
  expect_error(bad, "dstate");
  bad = s;
  bad.n_groups = 3;
  expect_error(bad, "divisible");
  bad = s;
  bad.length = 0;
  expect_error(bad, "length");
  bad = s;
  bad.bc_dtype = DType::kFloat16;
  expect_error(bad, "B and C");
  bad = s;
  bad.u = nullptr;
  expect_error(bad, "null");
  bad = s;
  bad.chunk_size = 0;
  expect_error(bad, "chunk_size");
  SelectiveScanGrads g;
  EXPECT_THROW(localmamba::selective_scan_bwd_cpu(s, g), std::invalid_argument);  // no chunk states
}
