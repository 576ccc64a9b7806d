// The CUDA selective scan (cuda/selective_scan.cu, run by the host emulation) against the CPU
// kernels, forward and backward, on random inputs; every output and workspace starts as NaN.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "emulation_test_support.h"
#include "localmamba/selective_scan.h"

namespace localmamba {
namespace {

using emulation_test::Buffer;
using emulation_test::expect_close;
using emulation_test::poisoned_buffer;
using emulation_test::random_buffer;

struct Case {
  const char* name;
  DType dtype;
  bool bc_float32;  // B and C in float32 with 16-bit inputs
  int64_t batch, dim, length, dstate, groups;
  bool z, D, delta_bias, softplus, initial_state, dlast_state;
  int64_t row_padding;  // > 0: u, delta, z, B, C, dout rows are this much longer than L (strided inputs)
};

// Names the case in test listings (and ctest names) instead of dumping its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string case_name(const testing::TestParamInfo<Case>& info) { return info.param.name; }

// Inputs shared by the CPU and the CUDA run.
struct Inputs {
  int64_t row;  // elements between consecutive time rows
  Buffer u, delta, z, A, B, C, D, bias, h0, dout, dlast;
};

Inputs make_inputs(const Case& c) {
  std::mt19937 rng(1234 + static_cast<uint32_t>(c.length * 7 + c.dstate));
  const DType sdt = selective_scan_state_dtype(c.dtype), bdt = c.bc_float32 ? DType::kFloat32 : c.dtype;
  Inputs in;
  in.row = c.length + c.row_padding;
  const int64_t rows = c.batch * c.dim * in.row, bc_rows = c.batch * c.groups * c.dstate * in.row;
  in.u = random_buffer(c.dtype, rows, rng);
  in.delta = random_buffer(c.dtype, rows, rng, 0.4, c.softplus ? -0.5 : 0.5);
  in.z = random_buffer(c.dtype, rows, rng);
  in.A = random_buffer(sdt, c.dim * c.dstate, rng, 0.3, -0.4);
  in.B = random_buffer(bdt, bc_rows, rng);
  in.C = random_buffer(bdt, bc_rows, rng);
  in.D = random_buffer(sdt, c.dim, rng);
  in.bias = random_buffer(sdt, c.dim, rng, 0.3);
  in.h0 = random_buffer(sdt, c.batch * c.dim * c.dstate, rng);
  in.dout = random_buffer(c.dtype, rows, rng);
  in.dlast = random_buffer(sdt, c.batch * c.dim * c.dstate, rng);
  return in;
}

// Forward outputs and gradients of one implementation.
struct Results {
  Buffer out, last, chunk_states, du, ddelta, dz, dA, dB, dC, dD, dbias, dh0;
};

SelectiveScanParams make_params(const Case& c, Inputs& in, Results& r, int64_t chunk_size) {
  const DType sdt = selective_scan_state_dtype(c.dtype);
  const int64_t L = c.length, N = c.dstate, G = c.groups, row = in.row;
  SelectiveScanParams p;
  p.dtype = c.dtype;
  p.bc_dtype = c.bc_float32 ? DType::kFloat32 : c.dtype;
  p.batch = c.batch, p.dim = c.dim, p.length = L, p.dstate = N, p.n_groups = G;
  p.chunk_size = chunk_size;
  p.delta_softplus = c.softplus;
  p.u = in.u.data(), p.u_stride_batch = c.dim * row, p.u_stride_dim = row;
  p.delta = in.delta.data(), p.delta_stride_batch = c.dim * row, p.delta_stride_dim = row;
  p.A = in.A.data(), p.A_stride_dim = N, p.A_stride_state = 1;
  p.B = in.B.data(), p.B_stride_batch = G * N * row, p.B_stride_group = N * row, p.B_stride_state = row;
  p.C = in.C.data(), p.C_stride_batch = G * N * row, p.C_stride_group = N * row, p.C_stride_state = row;
  if (c.D) p.D = in.D.data(), p.D_stride = 1;
  if (c.z) p.z = in.z.data(), p.z_stride_batch = c.dim * row, p.z_stride_dim = row;
  if (c.delta_bias) p.delta_bias = in.bias.data(), p.delta_bias_stride = 1;
  if (c.initial_state) {
    p.initial_state = in.h0.data();
    p.initial_state_stride_batch = c.dim * N, p.initial_state_stride_dim = N, p.initial_state_stride_state = 1;
  }
  r.out = poisoned_buffer(c.dtype, c.batch * c.dim * L);
  r.last = poisoned_buffer(sdt, c.batch * c.dim * N);
  p.out = r.out.data(), p.out_stride_batch = c.dim * L, p.out_stride_dim = L;
  p.last_state = r.last.data();
  p.last_state_stride_batch = c.dim * N, p.last_state_stride_dim = N, p.last_state_stride_state = 1;
  r.chunk_states = poisoned_buffer(sdt, selective_scan_chunk_states_numel(p));
  p.chunk_states = r.chunk_states.data();
  return p;
}

SelectiveScanGrads make_grads(const Case& c, Inputs& in, Results& r) {
  const DType sdt = selective_scan_state_dtype(c.dtype), bdt = c.bc_float32 ? DType::kFloat32 : c.dtype;
  const int64_t L = c.length, N = c.dstate, G = c.groups;
  SelectiveScanGrads g;
  g.dout = in.dout.data(), g.dout_stride_batch = c.dim * in.row, g.dout_stride_dim = in.row;
  if (c.dlast_state) {
    g.dlast_state = in.dlast.data();
    g.dlast_state_stride_batch = c.dim * N, g.dlast_state_stride_dim = N, g.dlast_state_stride_state = 1;
  }
  const int64_t rows = c.batch * c.dim * L;
  r.du = poisoned_buffer(c.dtype, rows);
  r.ddelta = poisoned_buffer(c.dtype, rows);
  r.dz = poisoned_buffer(c.dtype, rows);
  r.dA = poisoned_buffer(sdt, c.dim * N);
  r.dB = poisoned_buffer(bdt, c.batch * G * N * L);
  r.dC = poisoned_buffer(bdt, c.batch * G * N * L);
  r.dD = poisoned_buffer(sdt, c.dim);
  r.dbias = poisoned_buffer(sdt, c.dim);
  r.dh0 = poisoned_buffer(sdt, c.batch * c.dim * N);
  g.du = r.du.data(), g.du_stride_batch = c.dim * L, g.du_stride_dim = L;
  g.ddelta = r.ddelta.data(), g.ddelta_stride_batch = c.dim * L, g.ddelta_stride_dim = L;
  if (c.z) g.dz = r.dz.data(), g.dz_stride_batch = c.dim * L, g.dz_stride_dim = L;
  g.dA = r.dA.data(), g.dA_stride_dim = N, g.dA_stride_state = 1;
  g.dB = r.dB.data(), g.dB_stride_batch = G * N * L, g.dB_stride_group = N * L, g.dB_stride_state = L;
  g.dC = r.dC.data(), g.dC_stride_batch = G * N * L, g.dC_stride_group = N * L, g.dC_stride_state = L;
  g.dD = r.dD.data(), g.dD_stride = 1;
  g.ddelta_bias = r.dbias.data(), g.ddelta_bias_stride = 1;
  g.dinitial_state = r.dh0.data();
  g.dinitial_state_stride_batch = c.dim * N, g.dinitial_state_stride_dim = N, g.dinitial_state_stride_state = 1;
  return g;
}

class EmulatedSelectiveScan : public testing::TestWithParam<Case> {};

TEST_P(EmulatedSelectiveScan, ForwardAndBackwardMatchTheCpuKernels) {
  const Case c = GetParam();
  Inputs in = make_inputs(c);
  Results cpu, gpu;
  const SelectiveScanParams p_cpu = make_params(c, in, cpu, 64);
  SelectiveScanParams p_gpu = make_params(c, in, gpu, cuda::selective_scan_cuda_chunk_size());
  selective_scan_fwd_cpu(p_cpu);
  cuda::selective_scan_fwd(p_gpu);
  const SelectiveScanGrads g_cpu = make_grads(c, in, cpu), g_gpu = make_grads(c, in, gpu);
  Buffer workspace = poisoned_buffer(DType::kFloat64, (selective_scan_bwd_workspace_bytes(p_gpu) + 7) / 8);
  p_gpu.workspace = workspace.data();
  p_gpu.workspace_bytes = workspace.bytes();
  selective_scan_bwd_cpu(p_cpu, g_cpu);
  cuda::selective_scan_bwd(p_gpu, g_gpu);

  const DType sdt = selective_scan_state_dtype(c.dtype), bdt = c.bc_float32 ? DType::kFloat32 : c.dtype;
  expect_close(gpu.out, cpu.out, c.dtype, "out");
  expect_close(gpu.last, cpu.last, sdt, "last_state");
  expect_close(gpu.du, cpu.du, c.dtype, "du");
  expect_close(gpu.ddelta, cpu.ddelta, c.dtype, "ddelta");
  if (c.z) expect_close(gpu.dz, cpu.dz, c.dtype, "dz");
  expect_close(gpu.dA, cpu.dA, sdt, "dA");
  expect_close(gpu.dB, cpu.dB, bdt == DType::kFloat32 ? c.dtype : bdt, "dB");
  expect_close(gpu.dC, cpu.dC, bdt == DType::kFloat32 ? c.dtype : bdt, "dC");
  expect_close(gpu.dD, cpu.dD, sdt, "dD");
  expect_close(gpu.dbias, cpu.dbias, sdt, "ddelta_bias");
  expect_close(gpu.dh0, cpu.dh0, sdt, "dinitial_state");
}

constexpr DType f64 = DType::kFloat64, f32 = DType::kFloat32, f16 = DType::kFloat16, bf16 = DType::kBFloat16;

// L: 1, within one CUDA chunk (512 steps), not a multiple of it, several chunks.
INSTANTIATE_TEST_SUITE_P(
    Cases, EmulatedSelectiveScan,
    testing::Values(
        //    name                      dtype bcf32 B  D  L     N   G  z      D      bias   sp     h0     dlast  pad
        Case{"f64_all_options", f64, false, 2, 3, 37, 5, 1, true, true, true, true, true, true, 0},
        Case{"f64_no_options", f64, false, 1, 2, 37, 4, 1, false, false, false, false, false, false, 0},
        Case{"f64_length1", f64, false, 2, 3, 1, 4, 1, true, true, true, true, true, true, 0},
        Case{"f64_groups_strided", f64, false, 2, 4, 45, 3, 2, true, true, true, true, false, true, 3},
        Case{"f64_three_chunks", f64, false, 1, 2, 1100, 3, 1, true, true, true, true, true, true, 0},
        Case{"f64_n1", f64, false, 2, 2, 70, 1, 1, false, true, true, true, true, false, 0},
        Case{"f64_n33", f64, false, 1, 2, 50, 33, 1, true, true, true, false, true, true, 0},
        Case{"f32_two_chunks", f32, false, 1, 2, 600, 6, 1, true, true, true, true, true, true, 0},
        Case{"f16_bc_f16", f16, false, 1, 2, 80, 4, 1, true, true, true, true, false, false, 0},
        Case{"bf16_bc_f32", bf16, true, 1, 2, 80, 4, 1, true, true, true, true, true, true, 2},
        Case{"f16_bc_f32_groups", f16, true, 2, 2, 33, 3, 2, false, true, true, true, false, true, 0},
        Case{"bf16_bc_bf16", bf16, false, 1, 2, 530, 2, 1, true, false, true, true, false, false, 0}),
    case_name);

TEST(EmulatedSelectiveScanEdges, EmptyBatchOrDimLaunchesNothing) {
  SelectiveScanParams p;
  p.dtype = p.bc_dtype = DType::kFloat32;
  p.batch = 0, p.dim = 3, p.length = 5, p.dstate = 2;
  p.chunk_size = cuda::selective_scan_cuda_chunk_size();
  float dummy[64] = {};
  p.u = p.delta = p.A = p.B = p.C = dummy;
  p.out = p.chunk_states = dummy;
  SelectiveScanGrads g;
  g.dout = dummy;
  const long long before = cuda_emulation::launch_count("bwd_kernel<T>");
  EXPECT_NO_THROW(cuda::selective_scan_fwd(p));
  EXPECT_NO_THROW(cuda::selective_scan_bwd(p, g));  // used to launch a (dim, 0) grid: invalid configuration
  p.batch = 2, p.dim = 0;
  EXPECT_NO_THROW(cuda::selective_scan_bwd(p, g));
  EXPECT_EQ(cuda_emulation::launch_count("bwd_kernel<T>"), before);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(EmulatedSelectiveScanEdges, BackwardRejectsAMissingOrShortWorkspace) {
  const Case c{"small", DType::kFloat32, false, 1, 2, 9, 3, 1, false, false, false, false, false, false, 0};
  Inputs in = make_inputs(c);
  Results r;
  SelectiveScanParams p = make_params(c, in, r, cuda::selective_scan_cuda_chunk_size());
  cuda::selective_scan_fwd(p);
  const SelectiveScanGrads g = make_grads(c, in, r);
  EXPECT_THROW(cuda::selective_scan_bwd(p, g), std::invalid_argument);
  Buffer workspace(DType::kFloat64, 4);
  p.workspace = workspace.data();
  p.workspace_bytes = workspace.bytes();
  EXPECT_LT(p.workspace_bytes, selective_scan_bwd_workspace_bytes(p));
  EXPECT_THROW(cuda::selective_scan_bwd(p, g), std::invalid_argument);
}

}  // namespace
}  // namespace localmamba
