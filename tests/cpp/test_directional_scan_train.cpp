// Backward of the channels-last directional scan (directional_scan_train_bwd_cpu) against a scalar
// float64 reference written here from the contract in directional_scan_train.h: the forward
// recurrence stored in full, then the adjoint backwards in time, per (batch, direction, channel).
// Index tables carry padding steps (-1) and leave tokens unvisited; gradient rows the kernel must
// not write keep a sentinel, and the comparison covers them.
// Tolerance (rows_test_util.h): float64 to 1e-10 * max|ref|; float32 to 1e-3 * max|ref| + 3e-4 |ref|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/directional_scan_infer.h"
#include "localmamba/directional_scan_train.h"
#include "localmamba/parallel.h"
#include "rows_test_util.h"

namespace lm = localmamba;
using rows_test::cast;
using rows_test::expect_close;
using rows_test::randn;

namespace {

constexpr double kSentinel = 1234.5;  // gradient rows the kernel must leave alone

struct TrainCase {
  int64_t batch, K, length, tokens, dim, N, R;
  bool sequence_inputs;  // LocalVim: u, delta / dt, B, C, du, ddelta, dB, dC in step order
  bool with_z;           // z (B, T, D) shared by the directions, read by token
};

// Inputs (float64) of one case; channels-last rows, as the kernel reads them.
struct TrainData {
  std::vector<int64_t> index;                     // (K, L), -1 = padding
  std::vector<double> u, delta, A, B, C, z, D, bias, W, dout;
};

// Gradients in the kernel's output layouts.
struct TrainGrads {
  std::vector<double> du, ddelta, dB, dC, dz, dA, dD, dbias, ddt, ddt_weight;  // ddt*: dt_rank > 0
};

TrainData make_data(const TrainCase& c, uint32_t seed) {
  std::mt19937 g(seed);
  TrainData d;
  const int64_t S = c.sequence_inputs ? c.length : c.tokens, Ku = c.sequence_inputs ? c.K : 1;
  for (int64_t k = 0; k < c.K; ++k) {  // a random order of a random subset of tokens, padding between
    std::vector<int64_t> row(c.length, -1), perm(c.tokens);
    for (int64_t i = 0; i < c.tokens; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), g);
    std::vector<int64_t> slots(c.length);
    for (int64_t i = 0; i < c.length; ++i) slots[i] = i;
    std::shuffle(slots.begin(), slots.end(), g);
    const int64_t visits = std::min(c.tokens, c.length - 1 - k % 2);  // at least one padding step
    for (int64_t i = 0; i < visits; ++i) row[slots[i]] = perm[i];
    d.index.insert(d.index.end(), row.begin(), row.end());
  }
  d.u = randn(c.batch * Ku * S * c.dim, g);
  d.delta = randn(c.batch * c.K * S * (c.R ? c.R : c.dim), g, 0.5, c.R ? 0.0 : -0.5);
  std::uniform_real_distribution<double> ua(0.05, 1.5);
  d.A.resize(c.K * c.dim * c.N);
  for (auto& a : d.A) a = -ua(g);
  d.B = randn(c.batch * c.K * S * c.N, g);
  d.C = randn(c.batch * c.K * S * c.N, g);
  d.z = randn(c.batch * c.tokens * c.dim, g);
  d.D = randn(c.K * c.dim, g);
  d.bias = randn(c.K * c.dim, g, 0.3, -1.0);
  d.W = randn(c.K * c.dim * std::max<int64_t>(c.R, 1), g, 0.4);
  d.dout = randn(c.batch * c.K * c.tokens * c.dim, g);
  return d;
}

double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The scalar reference: per (b, k, c) the forward states h[t][n] in full, then the adjoint.
TrainGrads reference(const TrainCase& c, const TrainData& d) {
  const int64_t L = c.length, T = c.tokens, Dm = c.dim, N = c.N, R = c.R, K = c.K;
  const int64_t S = c.sequence_inputs ? L : T, Ku = c.sequence_inputs ? K : 1;
  TrainGrads r;
  r.du.assign(c.batch * K * S * Dm, kSentinel);
  r.ddelta.assign(c.batch * K * S * Dm, kSentinel);
  r.dB.assign(c.batch * K * S * N, kSentinel);
  r.dC.assign(c.batch * K * S * N, kSentinel);
  r.dz.assign(c.with_z ? c.batch * K * T * Dm : 0, kSentinel);
  r.dA.assign(K * Dm * N, 0.0);
  r.dD.assign(K * Dm, 0.0);
  r.dbias.assign(K * Dm, 0.0);
  r.ddt.assign(c.batch * K * S * R, kSentinel);
  r.ddt_weight.assign(K * Dm * R, 0.0);
  std::vector<double> h((L + 1) * N), dlt(L), dsp(L), uu(L), dy(L), gz(L), ypre(L), gs(L), gd(L);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t* idx = d.index.data() + k * L;
      auto row_of = [&](int64_t t) { return c.sequence_inputs ? t : idx[t]; };  // -1: padding, no row
      std::vector<double> dB_sum(L * N, 0.0), dC_sum(L * N, 0.0), ddt_sum(L * R, 0.0);
      for (int64_t ch = 0; ch < Dm; ++ch) {
        const int64_t dg = k * Dm + ch;
        for (int64_t t = 0; t < L; ++t) {
          const int64_t s = row_of(t), tok = idx[t];
          uu[t] = s < 0 ? 0.0 : d.u[((b * Ku + (Ku > 1 ? k : 0)) * S + s) * Dm + ch];
          double raw = d.bias[dg];
          if (s >= 0) {
            if (R) {
              for (int64_t q = 0; q < R; ++q) raw += d.W[dg * R + q] * d.delta[((b * K + k) * S + s) * R + q];
            } else {
              raw += d.delta[((b * K + k) * S + s) * Dm + ch];
            }
          }
          dlt[t] = softplus(raw);
          dsp[t] = raw > 20.0 ? 1.0 : sigmoid(raw);
          const double go = tok < 0 ? 0.0 : d.dout[((b * K + k) * T + tok) * Dm + ch];
          const double z = c.with_z && tok >= 0 ? d.z[(b * T + tok) * Dm + ch] : 0.0;
          const double sz = sigmoid(z);
          dy[t] = c.with_z ? go * z * sz : go;
          gz[t] = go * sz * (1.0 + z * (1.0 - sz));
          ypre[t] = d.D[dg] * uu[t];
          for (int64_t n = 0; n < N; ++n) {
            const double bn = s < 0 ? 0.0 : d.B[((b * K + k) * S + s) * N + n];
            const double cn = s < 0 ? 0.0 : d.C[((b * K + k) * S + s) * N + n];
            h[(t + 1) * N + n] = std::exp(dlt[t] * d.A[dg * N + n]) * h[t * N + n] + dlt[t] * uu[t] * bn;
            ypre[t] += cn * h[(t + 1) * N + n];
          }
        }
        std::vector<double> q(N, 0.0);
        for (int64_t t = L - 1; t >= 0; --t) {
          const int64_t s = row_of(t);
          gs[t] = gd[t] = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const double a = d.A[dg * N + n], da = std::exp(dlt[t] * a);
            const double bn = s < 0 ? 0.0 : d.B[((b * K + k) * S + s) * N + n];
            const double cn = s < 0 ? 0.0 : d.C[((b * K + k) * S + s) * N + n];
            q[n] += cn * dy[t];
            dC_sum[t * N + n] += dy[t] * h[(t + 1) * N + n];
            dB_sum[t * N + n] += q[n] * dlt[t] * uu[t];
            gs[t] += q[n] * bn;
            const double e = q[n] * da * h[t * N + n];
            gd[t] += e * a;
            r.dA[dg * N + n] += e * dlt[t];
            q[n] *= da;
          }
        }
        for (int64_t t = 0; t < L; ++t) {
          const int64_t s = row_of(t), tok = idx[t];
          const double ddl = (gd[t] + uu[t] * gs[t]) * dsp[t];
          r.dD[dg] += dy[t] * uu[t];
          r.dbias[dg] += ddl;
          if (s >= 0) {
            r.du[((b * K + k) * S + s) * Dm + ch] = dlt[t] * gs[t] + d.D[dg] * dy[t];
            r.ddelta[((b * K + k) * S + s) * Dm + ch] = ddl;
            for (int64_t q = 0; q < R; ++q) {
              ddt_sum[t * R + q] += ddl * d.W[dg * R + q];
              r.ddt_weight[dg * R + q] += ddl * d.delta[((b * K + k) * S + s) * R + q];
            }
          }
          if (c.with_z && tok >= 0) r.dz[((b * K + k) * T + tok) * Dm + ch] = ypre[t] * gz[t];
        }
      }
      for (int64_t t = 0; t < L; ++t) {
        const int64_t s = row_of(t);
        if (s < 0) continue;
        for (int64_t n = 0; n < N; ++n) {
          r.dB[((b * K + k) * S + s) * N + n] = dB_sum[t * N + n];
          r.dC[((b * K + k) * S + s) * N + n] = dC_sum[t * N + n];
        }
        for (int64_t q = 0; q < R; ++q) r.ddt[((b * K + k) * S + s) * R + q] = ddt_sum[t * R + q];
      }
    }
  return r;
}

template <typename S>
struct KernelGrads {
  std::vector<S> du, ddelta, dB, dC, dz, dA, dD, dbias, ddt, ddt_weight;
};

// Runs the kernel on the data cast to S. workspace_slots: 0 = the size the library asks for;
// with_ddelta: false leaves ddelta out (dt_rank > 0: ddt and ddt_weight only).
template <typename S>
KernelGrads<S> run_kernel(const TrainCase& c, const TrainData& d, int64_t workspace_slots = 0, bool with_ddelta = true) {
  const int64_t L = c.length, T = c.tokens, Dm = c.dim, N = c.N, R = c.R, K = c.K;
  const int64_t Sn = c.sequence_inputs ? L : T, Ku = c.sequence_inputs ? K : 1;
  const bool by_token = !c.sequence_inputs;
  const auto u = cast<S>(d.u), delta = cast<S>(d.delta), A = cast<S>(d.A), B = cast<S>(d.B), C = cast<S>(d.C);
  const auto z = cast<S>(d.z), D = cast<S>(d.D), bias = cast<S>(d.bias), W = cast<S>(d.W), dout = cast<S>(d.dout);
  lm::DirectionalScanInferParams p;
  p.dtype = sizeof(S) == 8 ? lm::DType::kFloat64 : lm::DType::kFloat32;
  p.batch = c.batch, p.num_directions = K, p.dim = Dm, p.length = L, p.num_tokens = T, p.dstate = N, p.dt_rank = R;
  p.delta_softplus = true, p.index = d.index.data();
  p.u = {u.data(), Ku * Sn * Dm, Ku > 1 ? Sn * Dm : 0, Dm, by_token};
  if (R) {
    p.dt = {delta.data(), K * Sn * R, Sn * R, R, by_token};
    p.dt_weight = W.data(), p.dt_weight_stride_dim = R, p.dt_weight_stride_rank = 1;
  } else {
    p.delta = {delta.data(), K * Sn * Dm, Sn * Dm, Dm, by_token};
  }
  p.B = {B.data(), K * Sn * N, Sn * N, N, by_token};
  p.C = {C.data(), K * Sn * N, Sn * N, N, by_token};
  if (c.with_z) p.z = {z.data(), T * Dm, 0, Dm, true};
  p.A = A.data(), p.A_stride_dim = N, p.A_stride_state = 1;
  p.D = D.data(), p.D_stride = 1, p.delta_bias = bias.data(), p.delta_bias_stride = 1;

  KernelGrads<S> out;
  const S sentinel = static_cast<S>(kSentinel);
  out.du.assign(c.batch * K * Sn * Dm, sentinel);
  out.ddelta.assign(c.batch * K * Sn * Dm, sentinel);
  out.dB.assign(c.batch * K * Sn * N, sentinel);
  out.dC.assign(c.batch * K * Sn * N, sentinel);
  out.dz.assign(c.with_z ? c.batch * K * T * Dm : 0, sentinel);
  out.dA.assign(K * Dm * N, sentinel);
  out.dD.assign(K * Dm, sentinel);
  out.dbias.assign(K * Dm, sentinel);
  out.ddt.assign(c.batch * K * Sn * R, sentinel);
  out.ddt_weight.assign(K * Dm * R, sentinel);
  lm::DirectionalScanTrainGrads g;
  g.dout = {dout.data(), K * T * Dm, T * Dm, Dm, true};
  g.du = {out.du.data(), K * Sn * Dm, Sn * Dm, Dm, by_token};
  if (with_ddelta) g.ddelta = {out.ddelta.data(), K * Sn * Dm, Sn * Dm, Dm, by_token};
  if (R) {
    g.ddt = {out.ddt.data(), K * Sn * R, Sn * R, R, by_token};
    g.ddt_weight = out.ddt_weight.data(), g.ddt_weight_stride_dim = R, g.ddt_weight_stride_rank = 1;
  }
  g.dB = {out.dB.data(), K * Sn * N, Sn * N, N, by_token};
  g.dC = {out.dC.data(), K * Sn * N, Sn * N, N, by_token};
  if (c.with_z) g.dz = {out.dz.data(), K * T * Dm, T * Dm, Dm, true};
  g.dA = out.dA.data(), g.dA_stride_dim = N, g.dA_stride_state = 1;
  g.dD = out.dD.data(), g.dD_stride = 1, g.ddelta_bias = out.dbias.data(), g.ddelta_bias_stride = 1;
  const lm::DirectionalScanTrainLayout lay = lm::directional_scan_train_layout(p);
  const int64_t bytes = workspace_slots > 0 ? lay.slot_offset + workspace_slots * lay.slot_bytes
                                            : lm::directional_scan_train_workspace_bytes(p);
  std::vector<double> workspace((bytes + 63) / 8 + 8);  // 64-byte aligned inside
  const uintptr_t at = (reinterpret_cast<uintptr_t>(workspace.data()) + 63) / 64 * 64;
  g.workspace = reinterpret_cast<void*>(at), g.workspace_bytes = bytes;
  lm::directional_scan_train_bwd_cpu(p, g);
  return out;
}

template <typename S>
void compare(const KernelGrads<S>& a, const TrainGrads& e) {
  expect_close(a.du, e.du, "du");
  expect_close(a.ddelta, e.ddelta, "ddelta");
  expect_close(a.ddt, e.ddt, "ddt");
  expect_close(a.ddt_weight, e.ddt_weight, "ddt_weight");
  expect_close(a.dB, e.dB, "dB");
  expect_close(a.dC, e.dC, "dC");
  expect_close(a.dz, e.dz, "dz");
  expect_close(a.dA, e.dA, "dA");
  expect_close(a.dD, e.dD, "dD");
  expect_close(a.dbias, e.dbias, "ddelta_bias");
}

void check(const TrainCase& c) {
  const TrainData d = make_data(c, 7);
  const TrainGrads e = reference(c, d);
  compare(run_kernel<double>(c, d), e);
  compare(run_kernel<float>(c, d), e);
  if (c.R) {  // ddt and ddt_weight without the (B, K, S, D) ddelta: the same values
    const KernelGrads<double> full = run_kernel<double>(c, d), lean = run_kernel<double>(c, d, 0, false);
    EXPECT_EQ(full.ddt, lean.ddt);
    EXPECT_EQ(full.ddt_weight, lean.ddt_weight);
    EXPECT_EQ(lean.ddelta, std::vector<double>(lean.ddelta.size(), kSentinel));
  }
}

template <typename S>
bool same(const KernelGrads<S>& a, const KernelGrads<S>& b) {
  return a.du == b.du && a.ddelta == b.ddelta && a.dB == b.dB && a.dC == b.dC && a.dz == b.dz && a.dA == b.dA &&
         a.dD == b.dD && a.dbias == b.dbias && a.ddt == b.ddt && a.ddt_weight == b.ddt_weight;
}

TEST(DirectionalScanTrain, SequenceInputsWithDtProjectionAndTokenZ) {  // the LocalVim layout
  check({2, 3, 23, 19, 35, 16, 3, true, true});
}

TEST(DirectionalScanTrain, TokenOrderSharedUFullDelta) {  // the LocalVMamba layout, odd N
  check({2, 2, 17, 15, 21, 5, 0, false, false});
}

TEST(DirectionalScanTrain, SeveralChannelSegmentsAndOddState) {  // batch * K small: channel segments
  check({1, 2, 13, 12, 53, 17, 2, true, true});
}

TEST(DirectionalScanTrain, SingleChannelSingleState) { check({1, 1, 3, 2, 1, 1, 1, false, true}); }

TEST(DirectionalScanTrain, ResultDoesNotDependOnThreadCountOrSlots) {
  const TrainCase c{3, 2, 21, 20, 40, 16, 3, true, true};
  const TrainData d = make_data(c, 11);
  const int before = lm::get_num_threads();
  lm::set_num_threads(1);
  const KernelGrads<float> one = run_kernel<float>(c, d);
  lm::set_num_threads(2);
  const KernelGrads<float> two = run_kernel<float>(c, d);
  lm::set_num_threads(3);
  const KernelGrads<float> three = run_kernel<float>(c, d);
  const KernelGrads<float> one_slot = run_kernel<float>(c, d, 1);  // 3 threads, a workspace for 1
  lm::set_num_threads(before);
  EXPECT_TRUE(same(one, two));
  EXPECT_TRUE(same(one, three));
  EXPECT_TRUE(same(one, one_slot));
}

TEST(DirectionalScanTrain, RejectsBadWorkspaceAndMissingGradients) {
  const TrainCase c{1, 1, 4, 4, 3, 2, 0, false, false};
  const TrainData d = make_data(c, 3);
  const std::vector<float> u = cast<float>(d.u), delta = cast<float>(d.delta), A = cast<float>(d.A);
  const std::vector<float> B = cast<float>(d.B), dout = cast<float>(d.dout);
  std::vector<float> du(u.size()), dB(B.size()), dA(A.size());
  lm::DirectionalScanInferParams p;
  p.batch = 1, p.num_directions = 1, p.dim = 3, p.length = 4, p.num_tokens = 4, p.dstate = 2;
  p.index = d.index.data();
  p.u = {u.data(), 12, 0, 3, true};
  p.delta = {delta.data(), 12, 12, 3, true};
  p.B = p.C = {B.data(), 8, 8, 2, true};
  p.A = A.data(), p.A_stride_dim = 2, p.A_stride_state = 1;
  lm::DirectionalScanTrainGrads g;
  g.dout = {dout.data(), 12, 12, 3, true};
  g.du = g.ddelta = {du.data(), 12, 12, 3, true};
  g.dB = g.dC = {dB.data(), 8, 8, 2, true};
  g.dA = dA.data(), g.dA_stride_dim = 2, g.dA_stride_state = 1;
  const lm::DirectionalScanTrainLayout lay = lm::directional_scan_train_layout(p);
  std::vector<double> ws((lay.slot_offset + lay.slot_bytes) / 8 + 8);
  g.workspace = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 63) / 64 * 64);
  g.workspace_bytes = lay.slot_offset + lay.slot_bytes - 1;  // less than one slot
  EXPECT_THROW(lm::directional_scan_train_bwd_cpu(p, g), std::invalid_argument);
  g.workspace_bytes += 1;
  EXPECT_NO_THROW(lm::directional_scan_train_bwd_cpu(p, g));
  g.ddt_weight = dA.data();  // needs dt_rank > 0
  EXPECT_THROW(lm::directional_scan_train_bwd_cpu(p, g), std::invalid_argument);
  g.ddt_weight = nullptr;
  g.ddelta.ptr = nullptr;  // required with dt_rank == 0
  EXPECT_THROW(lm::directional_scan_train_bwd_cpu(p, g), std::invalid_argument);
  g.ddelta.ptr = du.data();
  g.dB.ptr = nullptr;
  EXPECT_THROW(lm::directional_scan_train_bwd_cpu(p, g), std::invalid_argument);
}

}  // namespace
