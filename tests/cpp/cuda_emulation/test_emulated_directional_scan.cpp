// The CUDA directional scan (cuda/directional_scan.cu, run by the host emulation) against the CPU
// kernels, forward and backward, on random inputs: K = 1, 4, 8; every scan-order family on
// non-square grids with padding; dt projection in the kernel; reduce_sum with weights; shared u;
// sequence-order inputs; the middle-class-token table; BCL and BLC outputs; 16-bit inputs with
// B / C in float32 or the input type. Every output and workspace starts as NaN.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "emulation_test_support.h"
#include "localmamba/directional_scan.h"
#include "localmamba/scan_order.h"

namespace localmamba {
namespace {

using emulation_test::Buffer;
using emulation_test::expect_close;
using emulation_test::poisoned_buffer;
using emulation_test::random_buffer;

enum Input { kSharedU, kPerDirectionU, kSequence };  // token order (u shared or not) / sequence order

struct Case {
  const char* name;
  DType dtype;
  bool bc_float32;
  std::vector<const char*> directions;
  int64_t height, width, batch, dim, dstate, dt_rank;
  Input input;
  bool reduce_sum, weights, blc, options;  // options: z, D, delta_bias, softplus
  int64_t cls_index;                       // >= 0: middle-class-token table over H*W + 1 tokens
};

// Names the case in test listings (and ctest names) instead of dumping its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The direction tables as the ops build them (middle_cls_index_table in Python for cls_index >= 0).
struct Table {
  int64_t K, length, tokens;
  std::vector<int64_t> index;
};

Table make_table(const Case& c) {
  std::vector<ScanDirection> dirs;
  for (const char* name : c.directions) dirs.push_back(parse_direction(name));
  const ScanIndexMaps maps = build_scan_index_maps(dirs, c.height, c.width);
  Table t{maps.num_directions, maps.max_length, maps.num_tokens, maps.forward};
  if (c.cls_index < 0) return t;
  const int64_t cls = c.cls_index;
  t.length = maps.max_length + 1;
  t.tokens = maps.num_tokens + 1;
  t.index.clear();
  for (int64_t k = 0; k < t.K; ++k) {
    for (int64_t s = 0; s < t.length; ++s) {
      if (s == cls) {
        t.index.push_back(cls);
        continue;
      }
      const int64_t p = maps.forward[k * maps.max_length + (s < cls ? s : s - 1)];
      t.index.push_back(p >= cls ? p + 1 : p);
    }
  }
  return t;
}

struct Inputs {
  Table table;
  int64_t steps;  // elements per input row: tokens (token order) or length (sequence order)
  Buffer u, delta, dt_weight, A, B, C, D, z, bias, weights, dout;
};

Inputs make_inputs(const Case& c) {
  std::mt19937 rng(99 + static_cast<uint32_t>(c.height * 31 + c.width));
  Inputs in;
  in.table = make_table(c);
  const int64_t K = in.table.K, T = c.input == kSequence ? in.table.length : in.table.tokens;
  in.steps = T;
  const DType sdt = c.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  const DType bdt = c.bc_float32 ? DType::kFloat32 : c.dtype;
  const int64_t delta_rows = c.dt_rank > 0 ? c.dt_rank : c.dim;
  in.u = random_buffer(c.dtype, c.batch * (c.input == kSharedU ? 1 : K) * c.dim * T, rng);
  in.delta = random_buffer(c.dtype, c.batch * K * delta_rows * T, rng, 0.4, c.options ? -0.4 : 0.5);
  in.dt_weight = random_buffer(sdt, K * c.dim * c.dt_rank, rng, 0.6);
  in.A = random_buffer(sdt, K * c.dim * c.dstate, rng, 0.3, -0.4);
  in.B = random_buffer(bdt, c.batch * K * c.dstate * T, rng);
  in.C = random_buffer(bdt, c.batch * K * c.dstate * T, rng);
  in.D = random_buffer(sdt, K * c.dim, rng);
  in.z = random_buffer(c.dtype, c.batch * K * c.dim * T, rng);
  in.bias = random_buffer(sdt, K * c.dim, rng, 0.3);
  in.weights = random_buffer(sdt, K, rng, 0.5, 1.0);
  in.dout = random_buffer(c.dtype, c.batch * (c.reduce_sum ? 1 : K) * c.dim * in.table.tokens, rng);
  return in;
}

struct Results {
  Buffer out, chunk_states, du, ddelta, dt_weight, dz, dA, dB, dC, dD, dbias, dweights;
};

// Strides (batch, direction, row) of a (B, K or shared, rows, steps) tensor.
struct Rows {
  int64_t batch, direction, row;
};
Rows rows_of(const Case& c, int64_t rows, int64_t steps, bool shared) {
  const int64_t per_direction = rows * steps;
  return {shared ? per_direction : per_direction * static_cast<int64_t>(c.directions.size()),
          shared ? 0 : per_direction, steps};
}

DirectionalScanParams make_params(const Case& c, Inputs& in, Results& r, int64_t chunk_size) {
  const int64_t K = in.table.K, T = in.steps, NT = in.table.tokens, N = c.dstate, R = c.dt_rank;
  const DType sdt = c.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  DirectionalScanParams p;
  p.dtype = c.dtype;
  p.bc_dtype = c.bc_float32 ? DType::kFloat32 : c.dtype;
  p.batch = c.batch, p.num_directions = K, p.dim = c.dim, p.length = in.table.length, p.num_tokens = NT;
  p.dstate = N, p.dt_rank = R, p.chunk_size = chunk_size;
  p.delta_softplus = c.options, p.sequence_inputs = c.input == kSequence, p.reduce_sum = c.reduce_sum;
  p.index = in.table.index.data();
  const Rows u = rows_of(c, c.dim, T, c.input == kSharedU), d = rows_of(c, c.dim, T, false);
  const Rows n = rows_of(c, N, T, false), rk = rows_of(c, R, T, false);
  p.u = in.u.data(), p.u_stride_batch = u.batch, p.u_stride_direction = u.direction, p.u_stride_dim = u.row;
  if (R > 0) {
    p.dt = in.delta.data(), p.dt_stride_batch = rk.batch, p.dt_stride_direction = rk.direction;
    p.dt_stride_rank = rk.row;
    p.dt_weight = in.dt_weight.data(), p.dt_weight_stride_dim = R, p.dt_weight_stride_rank = 1;
  } else {
    p.delta = in.delta.data(), p.delta_stride_batch = d.batch, p.delta_stride_direction = d.direction;
    p.delta_stride_dim = d.row;
  }
  p.A = in.A.data(), p.A_stride_dim = N, p.A_stride_state = 1;
  p.B = in.B.data(), p.B_stride_batch = n.batch, p.B_stride_direction = n.direction, p.B_stride_state = n.row;
  p.C = in.C.data(), p.C_stride_batch = n.batch, p.C_stride_direction = n.direction, p.C_stride_state = n.row;
  if (c.options) {
    p.D = in.D.data(), p.D_stride = 1;
    p.z = in.z.data(), p.z_stride_batch = d.batch, p.z_stride_direction = d.direction, p.z_stride_dim = d.row;
    p.delta_bias = in.bias.data(), p.delta_bias_stride = 1;
  }
  if (c.weights) p.weights = in.weights.data(), p.weights_stride = 1;
  const int64_t out_k = c.reduce_sum ? 1 : K;
  r.out = poisoned_buffer(c.dtype, c.batch * out_k * c.dim * NT);
  p.out = r.out.data();
  p.out_stride_batch = out_k * c.dim * NT;
  p.out_stride_direction = c.reduce_sum ? 0 : c.dim * NT;
  p.out_stride_dim = c.blc ? 1 : NT;
  p.out_stride_token = c.blc ? c.dim : 1;
  r.chunk_states = poisoned_buffer(sdt, directional_scan_chunk_states_numel(p));
  p.chunk_states = r.chunk_states.data();
  return p;
}

DirectionalScanGrads make_grads(const Case& c, const DirectionalScanParams& p, Inputs& in, Results& r) {
  const int64_t K = in.table.K, N = c.dstate, R = c.dt_rank;
  const DType sdt = c.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  const DType bdt = c.bc_float32 ? DType::kFloat32 : c.dtype;
  DirectionalScanGrads g;
  g.dout = in.dout.data();
  g.dout_stride_batch = p.out_stride_batch, g.dout_stride_direction = p.out_stride_direction;
  g.dout_stride_dim = p.out_stride_dim, g.dout_stride_token = p.out_stride_token;
  r.du = poisoned_buffer(c.dtype, in.u.numel());
  g.du = r.du.data(), g.du_stride_batch = p.u_stride_batch, g.du_stride_direction = p.u_stride_direction;
  g.du_stride_dim = p.u_stride_dim;
  r.ddelta = poisoned_buffer(c.dtype, in.delta.numel());
  if (R > 0) {
    g.ddt = r.ddelta.data(), g.ddt_stride_batch = p.dt_stride_batch, g.ddt_stride_direction = p.dt_stride_direction;
    g.ddt_stride_rank = p.dt_stride_rank;
    r.dt_weight = poisoned_buffer(sdt, K * c.dim * R);
    g.ddt_weight = r.dt_weight.data(), g.ddt_weight_stride_dim = R, g.ddt_weight_stride_rank = 1;
  } else {
    g.ddelta = r.ddelta.data(), g.ddelta_stride_batch = p.delta_stride_batch;
    g.ddelta_stride_direction = p.delta_stride_direction, g.ddelta_stride_dim = p.delta_stride_dim;
  }
  r.dz = poisoned_buffer(c.dtype, in.z.numel());
  if (c.options) {
    g.dz = r.dz.data(), g.dz_stride_batch = p.z_stride_batch, g.dz_stride_direction = p.z_stride_direction;
    g.dz_stride_dim = p.z_stride_dim;
  }
  r.dA = poisoned_buffer(sdt, K * c.dim * N);
  g.dA = r.dA.data(), g.dA_stride_dim = N, g.dA_stride_state = 1;
  r.dB = poisoned_buffer(bdt, in.B.numel());
  r.dC = poisoned_buffer(bdt, in.C.numel());
  g.dB = r.dB.data(), g.dB_stride_batch = p.B_stride_batch, g.dB_stride_direction = p.B_stride_direction;
  g.dB_stride_state = p.B_stride_state;
  g.dC = r.dC.data(), g.dC_stride_batch = p.C_stride_batch, g.dC_stride_direction = p.C_stride_direction;
  g.dC_stride_state = p.C_stride_state;
  r.dD = poisoned_buffer(sdt, K * c.dim);
  r.dbias = poisoned_buffer(sdt, K * c.dim);
  g.dD = r.dD.data(), g.dD_stride = 1;
  g.ddelta_bias = r.dbias.data(), g.ddelta_bias_stride = 1;
  r.dweights = poisoned_buffer(sdt, K);
  if (c.weights) g.dweights = r.dweights.data(), g.dweights_stride = 1;
  return g;
}

class EmulatedDirectionalScan : public testing::TestWithParam<Case> {};

TEST_P(EmulatedDirectionalScan, ForwardAndBackwardMatchTheCpuKernels) {
  const Case c = GetParam();
  Inputs in = make_inputs(c);
  Results cpu, gpu;
  const DirectionalScanParams p_cpu = make_params(c, in, cpu, 64);
  DirectionalScanParams p_gpu = make_params(c, in, gpu, 512);
  Buffer fwd_ws = poisoned_buffer(DType::kFloat64, (directional_scan_fwd_workspace_bytes(p_gpu) + 7) / 8);
  p_gpu.workspace = fwd_ws.data(), p_gpu.workspace_bytes = fwd_ws.bytes();
  directional_scan_fwd_cpu(p_cpu);
  cuda::directional_scan_fwd(p_gpu);
  const DirectionalScanGrads g_cpu = make_grads(c, p_cpu, in, cpu), g_gpu = make_grads(c, p_gpu, in, gpu);
  Buffer bwd_ws = poisoned_buffer(DType::kFloat64, (directional_scan_bwd_workspace_bytes(p_gpu) + 7) / 8);
  p_gpu.workspace = bwd_ws.data(), p_gpu.workspace_bytes = bwd_ws.bytes();
  directional_scan_bwd_cpu(p_cpu, g_cpu);
  cuda::directional_scan_bwd(p_gpu, g_gpu);

  const DType sdt = c.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  expect_close(gpu.out, cpu.out, c.dtype, "out");
  expect_close(gpu.du, cpu.du, c.dtype, "du");
  expect_close(gpu.ddelta, cpu.ddelta, c.dtype, c.dt_rank > 0 ? "ddt" : "ddelta");
  if (c.dt_rank > 0) expect_close(gpu.dt_weight, cpu.dt_weight, sdt, "ddt_weight");
  if (c.options) expect_close(gpu.dz, cpu.dz, c.dtype, "dz");
  expect_close(gpu.dA, cpu.dA, sdt, "dA");
  expect_close(gpu.dB, cpu.dB, c.dtype, "dB");
  expect_close(gpu.dC, cpu.dC, c.dtype, "dC");
  expect_close(gpu.dD, cpu.dD, sdt, "dD");
  expect_close(gpu.dbias, cpu.dbias, sdt, "ddelta_bias");
  if (c.weights) expect_close(gpu.dweights, cpu.dweights, sdt, "dweights");
}

constexpr DType f64 = DType::kFloat64, f32 = DType::kFloat32, f16 = DType::kFloat16, bf16 = DType::kBFloat16;
const std::vector<const char*> kFour{"h", "v_flip", "w2", "w3_col_flip"};
const std::vector<const char*> kEight{"h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w3_col", "w3_col_flip"};

INSTANTIATE_TEST_SUITE_P(
    Cases, EmulatedDirectionalScan,
    testing::Values(
        //   name                    dtype bcf32 directions           H   W  B  D  N  R  input      reduce weights blc   options cls
        Case{"f64_k4_shared_u", f64, false, kFour, 5, 7, 2, 1, 4, 0, kSharedU, false, true, false, true, -1},
        Case{"f64_k4_dtproj_reduce_blc", f64, false, kFour, 5, 7, 1, 2, 3, 2, kSharedU, true, true, true, true, -1},
        Case{"f64_k1_window_padding", f64, false, {"w3"}, 4, 5, 1, 2, 3, 0, kSharedU, false, false, false, false, -1},
        Case{"f64_k8_all_families", f64, false, kEight, 3, 5, 1, 2, 3, 0, kSharedU, true, false, false, true, -1},
        Case{"f64_k4_per_direction_u", f64, false, kFour, 4, 3, 1, 2, 2, 0, kPerDirectionU, false, true, true, true, -1},
        Case{"f64_sequence_two_chunks", f64, false, {"h", "w4_flip"}, 23, 25, 1, 2, 3, 3, kSequence, true, true,
             false, true, -1},
        Case{"f64_middle_cls_sequence", f64, false, {"h", "v_flip", "w2", "w2_flip"}, 4, 5, 1, 2, 3, 0, kSequence,
             false, false, true, true, 10},
        Case{"f64_n1_n33", f64, false, {"v", "w2_col"}, 3, 4, 1, 1, 33, 0, kSharedU, false, false, false, true, -1},
        Case{"f32_dtproj_reduce_blc", f32, false, kFour, 5, 6, 1, 2, 4, 4, kSharedU, true, true, true, true, -1},
        Case{"f16_bc_f16_sequence", f16, false, kFour, 4, 5, 1, 2, 3, 0, kSequence, false, false, false, true, -1},
        Case{"f16_bc_f32", f16, true, kFour, 5, 4, 1, 2, 3, 2, kSharedU, false, true, true, true, -1},
        Case{"bf16_bc_bf16_dtproj", bf16, false, {"h_flip", "w2"}, 3, 7, 1, 2, 3, 2, kSharedU, false, false, false,
             true, -1},
        Case{"bf16_bc_f32_reduce", bf16, true, kFour, 5, 3, 1, 2, 3, 0, kSharedU, true, true, false, true, -1}),
    [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace localmamba
