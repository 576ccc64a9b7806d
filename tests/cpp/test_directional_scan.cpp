// Directional selective scan (CPU) against the composition it replaces: gather each direction
// through its scan order, run the grouped selective scan, scatter back to token order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "localmamba/directional_scan.h"
#include "localmamba/scan_order.h"
#include "localmamba/selective_scan.h"

namespace lm = localmamba;

namespace {

struct Case {
  std::vector<std::string> dirs;
  int64_t H, W, batch, dim, N;
};

std::vector<double> randn(size_t n, std::mt19937& g, double scale = 1.0, double shift = 0.0) {
  std::normal_distribution<double> d;
  std::vector<double> v(n);
  for (auto& x : v) x = shift + scale * d(g);
  return v;
}

void run_case(const Case& c, bool with_dt) {
  std::vector<lm::ScanDirection> dirs;
  for (const auto& d : c.dirs) dirs.push_back(lm::parse_direction(d));
  const lm::ScanIndexMaps maps = lm::build_scan_index_maps(dirs, c.H, c.W);
  const int64_t K = maps.num_directions, L = maps.max_length, T = c.H * c.W, B = c.batch, Dm = c.dim, N = c.N;
  const int64_t R = with_dt ? 2 : 0;
  std::mt19937 g(1234);
  // Token-order inputs.
  auto u = randn(B * Dm * T, g);
  auto dl = randn(B * K * (with_dt ? R : Dm) * T, g, 0.3, 0.2);
  auto Bm = randn(B * K * N * T, g), Cm = randn(B * K * N * T, g);
  std::vector<double> A(K * Dm * N), Dk = randn(K * Dm, g), bias = randn(K * Dm, g, 0.3);
  std::uniform_real_distribution<double> ua(0.05, 0.6);
  for (auto& a : A) a = -ua(g);
  auto W = randn(K * Dm * std::max<int64_t>(R, 1), g, 0.5);
  auto dout = randn(B * K * Dm * T, g);

  // Composition: gather (zeros at padding), grouped scan over K*Dm channels, scatter.
  std::vector<double> us(B * K * Dm * L, 0), ds(B * K * Dm * L, 0), Bs(B * K * N * L, 0), Cs(B * K * N * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t p = maps.forward[k * L + t];
        if (p < 0) continue;
        for (int64_t d = 0; d < Dm; ++d) {
          us[((b * K + k) * Dm + d) * L + t] = u[(b * Dm + d) * T + p];
          double v = 0;
          if (with_dt) {
            for (int64_t r = 0; r < R; ++r) v += W[(k * Dm + d) * R + r] * dl[((b * K + k) * R + r) * T + p];
          } else {
            v = dl[((b * K + k) * Dm + d) * T + p];
          }
          ds[((b * K + k) * Dm + d) * L + t] = v;
        }
        for (int64_t n = 0; n < N; ++n) {
          Bs[((b * K + k) * N + n) * L + t] = Bm[((b * K + k) * N + n) * T + p];
          Cs[((b * K + k) * N + n) * L + t] = Cm[((b * K + k) * N + n) * T + p];
        }
      }
  lm::SelectiveScanParams sp;
  sp.dtype = sp.bc_dtype = lm::DType::kFloat64;
  sp.batch = B, sp.dim = K * Dm, sp.length = L, sp.dstate = N, sp.n_groups = K, sp.chunk_size = 16;
  sp.delta_softplus = true;
  sp.u = us.data(), sp.u_stride_batch = K * Dm * L, sp.u_stride_dim = L;
  sp.delta = ds.data(), sp.delta_stride_batch = K * Dm * L, sp.delta_stride_dim = L;
  sp.A = A.data(), sp.A_stride_dim = N, sp.A_stride_state = 1;
  sp.B = Bs.data(), sp.B_stride_batch = K * N * L, sp.B_stride_group = N * L, sp.B_stride_state = L;
  sp.C = Cs.data(), sp.C_stride_batch = K * N * L, sp.C_stride_group = N * L, sp.C_stride_state = L;
  sp.D = Dk.data(), sp.D_stride = 1, sp.delta_bias = bias.data(), sp.delta_bias_stride = 1;
  std::vector<double> ys(B * K * Dm * L);
  std::vector<double> saved_ref(lm::selective_scan_chunk_states_numel(sp));
  sp.out = ys.data(), sp.out_stride_batch = K * Dm * L, sp.out_stride_dim = L, sp.chunk_states = saved_ref.data();
  lm::selective_scan_fwd_cpu(sp);
  std::vector<double> dys(B * K * Dm * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t p = maps.forward[k * L + t];
        if (p >= 0)
          for (int64_t d = 0; d < Dm; ++d)
            dys[((b * K + k) * Dm + d) * L + t] = dout[((b * K + k) * Dm + d) * T + p];
      }
  std::vector<double> dus(us.size()), dds(ds.size()), dBs(Bs.size()), dCs(Cs.size()), dA(A.size()), dD(K * Dm),
      dbias(K * Dm);
  lm::SelectiveScanGrads sg;
  sg.dout = dys.data(), sg.dout_stride_batch = K * Dm * L, sg.dout_stride_dim = L;
  sg.du = dus.data(), sg.du_stride_batch = K * Dm * L, sg.du_stride_dim = L;
  sg.ddelta = dds.data(), sg.ddelta_stride_batch = K * Dm * L, sg.ddelta_stride_dim = L;
  sg.dA = dA.data(), sg.dA_stride_dim = N, sg.dA_stride_state = 1;
  sg.dB = dBs.data(), sg.dB_stride_batch = K * N * L, sg.dB_stride_group = N * L, sg.dB_stride_state = L;
  sg.dC = dCs.data(), sg.dC_stride_batch = K * N * L, sg.dC_stride_group = N * L, sg.dC_stride_state = L;
  sg.dD = dD.data(), sg.dD_stride = 1, sg.ddelta_bias = dbias.data(), sg.ddelta_bias_stride = 1;
  lm::selective_scan_bwd_cpu(sp, sg);

  // Fused.
  lm::DirectionalScanParams p;
  p.dtype = p.bc_dtype = lm::DType::kFloat64;
  p.batch = B, p.num_directions = K, p.dim = Dm, p.length = L, p.num_tokens = T, p.dstate = N, p.dt_rank = R;
  p.chunk_size = 16, p.delta_softplus = true, p.index = maps.forward.data();
  p.u = u.data(), p.u_stride_batch = Dm * T, p.u_stride_direction = 0, p.u_stride_dim = T;
  if (with_dt) {
    p.dt = dl.data(), p.dt_stride_batch = K * R * T, p.dt_stride_direction = R * T, p.dt_stride_rank = T;
    p.dt_weight = W.data(), p.dt_weight_stride_dim = R, p.dt_weight_stride_rank = 1;
  } else {
    p.delta = dl.data(), p.delta_stride_batch = K * Dm * T, p.delta_stride_direction = Dm * T, p.delta_stride_dim = T;
  }
  p.A = A.data(), p.A_stride_dim = N, p.A_stride_state = 1;
  p.B = Bm.data(), p.B_stride_batch = K * N * T, p.B_stride_direction = N * T, p.B_stride_state = T;
  p.C = Cm.data(), p.C_stride_batch = K * N * T, p.C_stride_direction = N * T, p.C_stride_state = T;
  p.D = Dk.data(), p.D_stride = 1, p.delta_bias = bias.data(), p.delta_bias_stride = 1;
  std::vector<double> y(B * K * Dm * T, -7.0), saved(lm::directional_scan_chunk_states_numel(p));
  p.out = y.data(), p.out_stride_batch = K * Dm * T, p.out_stride_direction = Dm * T, p.out_stride_dim = T;
  p.out_stride_token = 1, p.chunk_states = saved.data();
  lm::directional_scan_fwd_cpu(p);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t pos = maps.forward[k * L + t];
        if (pos >= 0)
          for (int64_t d = 0; d < Dm; ++d)
            ASSERT_NEAR(y[((b * K + k) * Dm + d) * T + pos], ys[((b * K + k) * Dm + d) * L + t], 1e-11);
      }
  lm::DirectionalScanGrads gr;
  gr.dout = dout.data(), gr.dout_stride_batch = K * Dm * T, gr.dout_stride_direction = Dm * T;
  gr.dout_stride_dim = T, gr.dout_stride_token = 1;
  std::vector<double> du(u.size()), ddl(dl.size()), dB(Bm.size()), dC(Cm.size()), fA(A.size()), fD(K * Dm),
      fbias(K * Dm), dW(W.size());
  gr.du = du.data(), gr.du_stride_batch = Dm * T, gr.du_stride_dim = T;
  if (with_dt) {
    gr.ddt = ddl.data(), gr.ddt_stride_batch = K * R * T, gr.ddt_stride_direction = R * T, gr.ddt_stride_rank = T;
    gr.ddt_weight = dW.data(), gr.ddt_weight_stride_dim = R, gr.ddt_weight_stride_rank = 1;
  } else {
    gr.ddelta = ddl.data(), gr.ddelta_stride_batch = K * Dm * T, gr.ddelta_stride_direction = Dm * T;
    gr.ddelta_stride_dim = T;
  }
  gr.dA = fA.data(), gr.dA_stride_dim = N, gr.dA_stride_state = 1;
  gr.dB = dB.data(), gr.dB_stride_batch = K * N * T, gr.dB_stride_direction = N * T, gr.dB_stride_state = T;
  gr.dC = dC.data(), gr.dC_stride_batch = K * N * T, gr.dC_stride_direction = N * T, gr.dC_stride_state = T;
  gr.dD = fD.data(), gr.dD_stride = 1, gr.ddelta_bias = fbias.data(), gr.ddelta_bias_stride = 1;
  lm::directional_scan_bwd_cpu(p, gr);
  for (size_t i = 0; i < A.size(); ++i) EXPECT_NEAR(fA[i], dA[i], 1e-9 * (1 + std::fabs(dA[i])));
  for (int64_t i = 0; i < K * Dm; ++i) {
    EXPECT_NEAR(fD[i], dD[i], 1e-9 * (1 + std::fabs(dD[i])));
    EXPECT_NEAR(fbias[i], dbias[i], 1e-9 * (1 + std::fabs(dbias[i])));
  }
  // du: sum over directions of the scattered per-direction gradients; dB/dC/ddelta: scattered.
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> du_ref(Dm * T, 0.0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t pos = maps.forward[k * L + t];
        if (pos < 0) continue;
        for (int64_t d = 0; d < Dm; ++d) {
          du_ref[d * T + pos] += dus[((b * K + k) * Dm + d) * L + t];
          if (!with_dt)
            EXPECT_NEAR(ddl[((b * K + k) * Dm + d) * T + pos], dds[((b * K + k) * Dm + d) * L + t], 1e-9);
        }
        for (int64_t n = 0; n < N; ++n) {
          EXPECT_NEAR(dB[((b * K + k) * N + n) * T + pos], dBs[((b * K + k) * N + n) * L + t], 1e-9);
          EXPECT_NEAR(dC[((b * K + k) * N + n) * T + pos], dCs[((b * K + k) * N + n) * L + t], 1e-9);
        }
      }
    for (int64_t i = 0; i < Dm * T; ++i) EXPECT_NEAR(du[b * Dm * T + i], du_ref[i], 1e-9);
  }
  if (with_dt) {  // dW = sum_{b,t} ddelta * dt (sequence order)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < Dm; ++d)
        for (int64_t r = 0; r < R; ++r) {
          double ref = 0;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t < L; ++t) {
              const int64_t pos = maps.forward[k * L + t];
              if (pos >= 0) ref += dds[((b * K + k) * Dm + d) * L + t] * dl[((b * K + k) * R + r) * T + pos];
            }
          EXPECT_NEAR(dW[(k * Dm + d) * R + r], ref, 1e-9 * (1 + std::fabs(ref)));
        }
  }
}

}  // namespace

TEST(DirectionalScan, MatchesCompositionAllDirectionsNonDivisibleGrid) {
  run_case({{"h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip"}, 9, 13, 2, 3, 5}, false);
}

TEST(DirectionalScan, MatchesCompositionWithInKernelDeltaProjection) {
  run_case({{"h", "v_flip", "w2", "w2_flip"}, 7, 7, 3, 4, 4}, true);
}

TEST(DirectionalScan, SingleTokenGrid) { run_case({{"w2_flip"}, 1, 1, 1, 2, 3}, true); }

TEST(DirectionalScan, RejectsBadIndexTables) {
  lm::DirectionalScanParams p;
  std::vector<double> buf(64, 0.0);
  std::vector<int64_t> idx = {0, 1, 1, -1};
  p.dtype = p.bc_dtype = lm::DType::kFloat64;
  p.batch = 1, p.num_directions = 1, p.dim = 1, p.length = 4, p.num_tokens = 3, p.dstate = 1;
  p.index = idx.data();
  p.u = p.delta = p.A = p.B = p.C = buf.data();
  p.out = buf.data();
  EXPECT_THROW(lm::directional_scan_fwd_cpu(p), std::invalid_argument);  // token 1 twice, token 2 never
  idx = {0, 1, 2, 5};
  EXPECT_THROW(lm::directional_scan_fwd_cpu(p), std::invalid_argument);  // out of range
  idx = {0, 1, 2, -1};
  p.dt_rank = 2;
  EXPECT_THROW(lm::directional_scan_fwd_cpu(p), std::invalid_argument);  // dt_rank without dt
}
