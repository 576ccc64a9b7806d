// Forward-only channels-last directional scan (CPU) against the directional scan it stands in
// for (directional_scan_fwd_cpu, itself tested against the gather -> scan -> scatter
// composition), on the same random data transposed to the (token, channel) layout.
// Tolerance: float64 agrees to 1e-10 (relative to max|y|); float32 to 1e-3 * max|y| + 3e-4 |y|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/directional_scan.h"
#include "localmamba/directional_scan_infer.h"
#include "localmamba/parallel.h"
#include "localmamba/scan_order.h"

namespace lm = localmamba;

namespace {

struct InferCase {
  std::vector<std::string> dirs;
  int64_t H, W, batch, dim, N, R;
  bool sequence_inputs;  // LocalVim: u, delta / dt, B, C in sequence order; z read by token
  bool with_z, with_weights;
};

template <typename S>
std::vector<S> randn(size_t n, std::mt19937& g, double scale = 1.0, double shift = 0.0) {
  std::normal_distribution<double> d;
  std::vector<S> v(n);
  for (auto& x : v) x = static_cast<S>(shift + scale * d(g));
  return v;
}

// (rows, cols) -> (cols, rows) for each of `outer` matrices.
template <typename S>
std::vector<S> transpose_last(const std::vector<S>& x, int64_t outer, int64_t rows, int64_t cols) {
  std::vector<S> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) y[(o * cols + c) * rows + r] = x[(o * rows + r) * cols + c];
  return y;
}

template <typename S>
struct InferRun {
  std::vector<S> expected, actual;
};

template <typename S>
InferRun<S> run_case(const InferCase& c, lm::DType dtype) {
  std::vector<lm::ScanDirection> dirs;
  for (const auto& d : c.dirs) dirs.push_back(lm::parse_direction(d));
  const lm::ScanIndexMaps maps = lm::build_scan_index_maps(dirs, c.H, c.W);
  const int64_t K = maps.num_directions, L = maps.max_length, T = c.H * c.W, B = c.batch, Dm = c.dim, N = c.N, R = c.R;
  const int64_t S_in = c.sequence_inputs ? L : T;  // steps of u, delta / dt, B, C
  const int64_t Ku = c.sequence_inputs ? K : 1;    // token-order u is shared by the directions
  std::mt19937 g(99);
  // Channel-major ("BCL") inputs for the reference kernel.
  auto u = randn<S>(B * Ku * Dm * S_in, g);
  auto dl = randn<S>(B * K * (R ? R : Dm) * S_in, g, 0.3, 0.2);
  auto Bm = randn<S>(B * K * N * S_in, g), Cm = randn<S>(B * K * N * S_in, g);
  auto z = randn<S>(B * Dm * T, g);  // shared by the directions, token order
  std::vector<S> A(K * Dm * N);
  std::uniform_real_distribution<double> ua(0.05, 0.6);
  for (auto& a : A) a = static_cast<S>(-ua(g));
  auto Dk = randn<S>(K * Dm, g), bias = randn<S>(K * Dm, g, 0.3), wts = randn<S>(K, g, 0.2, 1.0);
  auto Wdt = randn<S>(K * Dm * std::max<int64_t>(R, 1), g, 0.5);
  // z for the reference: per direction, in the inputs' order (gathered when sequence order).
  std::vector<S> z_ref(B * K * Dm * S_in, S(0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < Dm; ++d)
        for (int64_t s = 0; s < S_in; ++s) {
          const int64_t p = c.sequence_inputs ? maps.forward[k * L + s] : s;
          z_ref[((b * K + k) * Dm + d) * S_in + s] = p >= 0 ? z[(b * Dm + d) * T + p] : S(0);
        }

  lm::DirectionalScanParams rp;
  rp.dtype = rp.bc_dtype = dtype;
  rp.batch = B, rp.num_directions = K, rp.dim = Dm, rp.length = L, rp.num_tokens = T, rp.dstate = N, rp.dt_rank = R;
  rp.chunk_size = 16, rp.delta_softplus = true, rp.sequence_inputs = c.sequence_inputs, rp.index = maps.forward.data();
  rp.u = u.data(), rp.u_stride_batch = Ku * Dm * S_in, rp.u_stride_direction = c.sequence_inputs ? Dm * S_in : 0;
  rp.u_stride_dim = S_in;
  if (R) {
    rp.dt = dl.data(), rp.dt_stride_batch = K * R * S_in, rp.dt_stride_direction = R * S_in, rp.dt_stride_rank = S_in;
    rp.dt_weight = Wdt.data(), rp.dt_weight_stride_dim = R, rp.dt_weight_stride_rank = 1;
  } else {
    rp.delta = dl.data(), rp.delta_stride_batch = K * Dm * S_in, rp.delta_stride_direction = Dm * S_in;
    rp.delta_stride_dim = S_in;
  }
  rp.A = A.data(), rp.A_stride_dim = N, rp.A_stride_state = 1;
  rp.B = Bm.data(), rp.B_stride_batch = K * N * S_in, rp.B_stride_direction = N * S_in, rp.B_stride_state = S_in;
  rp.C = Cm.data(), rp.C_stride_batch = K * N * S_in, rp.C_stride_direction = N * S_in, rp.C_stride_state = S_in;
  rp.D = Dk.data(), rp.D_stride = 1, rp.delta_bias = bias.data(), rp.delta_bias_stride = 1;
  if (c.with_z) {
    rp.z = z_ref.data(), rp.z_stride_batch = K * Dm * S_in, rp.z_stride_direction = Dm * S_in, rp.z_stride_dim = S_in;
  }
  if (c.with_weights) rp.weights = wts.data(), rp.weights_stride = 1;
  InferRun<S> run;
  run.expected.assign(B * K * T * Dm, S(0));
  rp.out = run.expected.data(), rp.out_stride_batch = K * T * Dm, rp.out_stride_direction = T * Dm;
  rp.out_stride_dim = 1, rp.out_stride_token = Dm;
  std::vector<S> saved(lm::directional_scan_chunk_states_numel(rp));
  rp.chunk_states = saved.data();
  lm::directional_scan_fwd_cpu(rp);

  // The same data channels-last: (..., steps, inner).
  const auto u_cl = transpose_last(u, B * Ku, Dm, S_in);
  const auto dl_cl = transpose_last(dl, B * K, R ? R : Dm, S_in);
  const auto B_cl = transpose_last(Bm, B * K, N, S_in), C_cl = transpose_last(Cm, B * K, N, S_in);
  const auto z_cl = transpose_last(z, B, Dm, T);
  lm::DirectionalScanInferParams p;
  p.dtype = dtype;
  p.batch = B, p.num_directions = K, p.dim = Dm, p.length = L, p.num_tokens = T, p.dstate = N, p.dt_rank = R;
  p.delta_softplus = true, p.index = maps.forward.data();
  const bool by_token = !c.sequence_inputs;
  p.u = {u_cl.data(), Ku * S_in * Dm, c.sequence_inputs ? S_in * Dm : 0, Dm, by_token};
  if (R) {
    p.dt = {dl_cl.data(), K * S_in * R, S_in * R, R, by_token};
    p.dt_weight = Wdt.data(), p.dt_weight_stride_dim = R, p.dt_weight_stride_rank = 1;
  } else {
    p.delta = {dl_cl.data(), K * S_in * Dm, S_in * Dm, Dm, by_token};
  }
  p.B = {B_cl.data(), K * S_in * N, S_in * N, N, by_token};
  p.C = {C_cl.data(), K * S_in * N, S_in * N, N, by_token};
  if (c.with_z) p.z = {z_cl.data(), T * Dm, 0, Dm, true};
  p.A = A.data(), p.A_stride_dim = N, p.A_stride_state = 1;
  p.D = Dk.data(), p.D_stride = 1, p.delta_bias = bias.data(), p.delta_bias_stride = 1;
  if (c.with_weights) p.weights = wts.data(), p.weights_stride = 1;
  run.actual.assign(B * K * T * Dm, S(-7));
  p.out = run.actual.data(), p.out_stride_batch = K * T * Dm, p.out_stride_direction = T * Dm, p.out_stride_token = Dm;
  lm::directional_scan_infer_cpu(p);
  return run;
}

void expect_close(const std::vector<double>& a, const std::vector<double>& e, double atol, double rtol) {
  double emax = 0;
  for (double v : e) emax = std::max(emax, std::fabs(v));
  ASSERT_GT(emax, 0.0);
  for (size_t i = 0; i < e.size(); ++i)
    ASSERT_LE(std::fabs(a[i] - e[i]), atol * emax + rtol * std::fabs(e[i])) << "element " << i;
}

void check(const InferCase& c) {
  const InferRun<double> r64 = run_case<double>(c, lm::DType::kFloat64);
  expect_close(r64.actual, r64.expected, 1e-10, 1e-10);
  const InferRun<float> r32 = run_case<float>(c, lm::DType::kFloat32);
  expect_close(std::vector<double>(r32.actual.begin(), r32.actual.end()),
               std::vector<double>(r32.expected.begin(), r32.expected.end()), 1e-3, 3e-4);
}

TEST(DirectionalScanInfer, TokenOrderSharedUWithDeltaProjection) {
  check({{"h", "v_flip", "w2", "w3_flip"}, 5, 7, 2, 19, 5, 3, false, false, false});
}

TEST(DirectionalScanInfer, TokenOrderFullDeltaWithZAndWeights) {
  check({{"h_flip", "w7"}, 9, 4, 3, 21, 16, 0, false, true, true});
}

TEST(DirectionalScanInfer, SequenceInputsWithTokenOrderZ) {  // the LocalVim layout
  check({{"h", "h_flip", "w2_flip"}, 3, 5, 2, 35, 17, 2, true, true, false});
}

TEST(DirectionalScanInfer, SingleTokenAndSingleChannel) { check({{"w2"}, 1, 1, 1, 1, 1, 1, false, true, true}); }

TEST(DirectionalScanInfer, ResultDoesNotDependOnThreadCount) {
  const InferCase c{{"h", "v_flip"}, 6, 5, 3, 40, 16, 4, false, true, false};
  const int before = lm::get_num_threads();
  lm::set_num_threads(1);
  const InferRun<float> one = run_case<float>(c, lm::DType::kFloat32);
  lm::set_num_threads(3);
  const InferRun<float> three = run_case<float>(c, lm::DType::kFloat32);
  lm::set_num_threads(before);
  EXPECT_EQ(one.actual, three.actual);
}

TEST(DirectionalScanInfer, RejectsBadArguments) {
  const std::vector<int64_t> index = {0, 1, 1};
  float x = 1.0f;
  lm::DirectionalScanInferParams p;
  p.batch = 1, p.num_directions = 1, p.dim = 1, p.length = 3, p.num_tokens = 2, p.dstate = 1;
  p.index = index.data();
  p.u = p.delta = p.B = p.C = {&x, 0, 0, 0, true};
  p.A = &x, p.out = &x;
  EXPECT_THROW(lm::directional_scan_infer_cpu(p), std::invalid_argument);  // token 1 visited twice
  p.dtype = lm::DType::kFloat16;
  EXPECT_THROW(lm::directional_scan_infer_cpu(p), std::invalid_argument);
  p.dtype = lm::DType::kFloat32;
  p.dstate = 0;
  EXPECT_THROW(lm::directional_scan_infer_cpu(p), std::invalid_argument);
}

}  // namespace
