// Bindings of the directional selective scan. Tensors arrive as (address, strides) pairs
// (strides in elements, one per dimension) or None; the index table as an address.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/directional_scan.h"
#include "bind_common.h"
#include "localmamba/dtype.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

// sizes = (batch, K, dim, length, num_tokens, dstate, dt_rank); flags = (softplus, sequence_inputs, reduce_sum)
DirectionalScanParams make(const std::string& dtype, const std::string& bc_dtype, const std::vector<int64_t>& sizes,
                           const std::vector<bool>& flags, int64_t chunk_size, uintptr_t index, const py::object& u,
                           const py::object& delta, const py::object& dt, const py::object& dt_weight,
                           const py::object& A, const py::object& B, const py::object& C, const py::object& D,
                           const py::object& z, const py::object& delta_bias, const py::object& weights,
                           uintptr_t chunk_states, uintptr_t stream) {
  if (sizes.size() != 7)
    throw std::invalid_argument("directional_scan: sizes must be (batch, K, dim, length, tokens, N, dt_rank)");
  if (flags.size() != 3) throw std::invalid_argument("directional_scan: flags must be (softplus, sequence, reduce)");
  DirectionalScanParams p;
  p.dtype = dtype_from_name(dtype);
  p.bc_dtype = dtype_from_name(bc_dtype);
  p.batch = sizes[0], p.num_directions = sizes[1], p.dim = sizes[2], p.length = sizes[3], p.num_tokens = sizes[4];
  p.dstate = sizes[5], p.dt_rank = sizes[6];
  p.delta_softplus = flags[0], p.sequence_inputs = flags[1], p.reduce_sum = flags[2];
  p.chunk_size = chunk_size;
  p.index = reinterpret_cast<const int64_t*>(index);
  const StridedArg a_u = parse_strided_arg(u, "directional_scan", "u", 4, true, true);
  p.u = a_u.ptr, p.u_stride_batch = a_u.stride(0), p.u_stride_direction = a_u.stride(1), p.u_stride_dim = a_u.stride(2);
  const StridedArg a_d = parse_strided_arg(delta, "directional_scan", "delta", 4, true, false);
  p.delta = a_d.ptr, p.delta_stride_batch = a_d.stride(0), p.delta_stride_direction = a_d.stride(1),
  p.delta_stride_dim = a_d.stride(2);
  const StridedArg a_dt = parse_strided_arg(dt, "directional_scan", "dt", 4, true, false);
  p.dt = a_dt.ptr, p.dt_stride_batch = a_dt.stride(0), p.dt_stride_direction = a_dt.stride(1), p.dt_stride_rank = a_dt.stride(2);
  const StridedArg a_w = parse_strided_arg(dt_weight, "directional_scan", "dt_weight", 2, false, false);
  p.dt_weight = a_w.ptr, p.dt_weight_stride_dim = a_w.stride(0), p.dt_weight_stride_rank = a_w.stride(1);
  const StridedArg a_A = parse_strided_arg(A, "directional_scan", "A", 2, false, true);
  p.A = a_A.ptr, p.A_stride_dim = a_A.stride(0), p.A_stride_state = a_A.stride(1);
  const StridedArg a_B = parse_strided_arg(B, "directional_scan", "B", 4, true, true);
  p.B = a_B.ptr, p.B_stride_batch = a_B.stride(0), p.B_stride_direction = a_B.stride(1), p.B_stride_state = a_B.stride(2);
  const StridedArg a_C = parse_strided_arg(C, "directional_scan", "C", 4, true, true);
  p.C = a_C.ptr, p.C_stride_batch = a_C.stride(0), p.C_stride_direction = a_C.stride(1), p.C_stride_state = a_C.stride(2);
  const StridedArg a_D = parse_strided_arg(D, "directional_scan", "D", 1, false, false);
  p.D = a_D.ptr, p.D_stride = a_D.stride(0);
  const StridedArg a_z = parse_strided_arg(z, "directional_scan", "z", 4, true, false);
  p.z = a_z.ptr, p.z_stride_batch = a_z.stride(0), p.z_stride_direction = a_z.stride(1), p.z_stride_dim = a_z.stride(2);
  const StridedArg a_b = parse_strided_arg(delta_bias, "directional_scan", "delta_bias", 1, false, false);
  p.delta_bias = a_b.ptr, p.delta_bias_stride = a_b.stride(0);
  const StridedArg a_wt = parse_strided_arg(weights, "directional_scan", "weights", 1, false, false);
  p.weights = a_wt.ptr, p.weights_stride = a_wt.stride(0);
  p.chunk_states = reinterpret_cast<void*>(chunk_states);
  p.cuda_stream = reinterpret_cast<void*>(stream);
  return p;
}

void fwd(const std::string& device, const std::string& dtype, const std::string& bc_dtype,
         const std::vector<int64_t>& sizes, const std::vector<bool>& flags, int64_t chunk_size, uintptr_t index,
         const py::object& u, const py::object& delta, const py::object& dt, const py::object& dt_weight,
         const py::object& A, const py::object& B, const py::object& C, const py::object& D, const py::object& z,
         const py::object& delta_bias, const py::object& weights, const py::object& out, uintptr_t chunk_states,
         uintptr_t stream, uintptr_t workspace, int64_t workspace_bytes) {
  const bool cuda = is_cuda_device(device);
  DirectionalScanParams p = make(dtype, bc_dtype, sizes, flags, chunk_size, index, u, delta, dt, dt_weight, A, B, C,
                                 D, z, delta_bias, weights, chunk_states, stream);
  p.workspace = reinterpret_cast<void*>(workspace);
  p.workspace_bytes = workspace_bytes;
  const StridedArg a_o = parse_strided_arg(out, "directional_scan", "out", 4, false, true);
  p.out = a_o.ptr, p.out_stride_batch = a_o.stride(0), p.out_stride_direction = a_o.stride(1), p.out_stride_dim = a_o.stride(2),
  p.out_stride_token = a_o.stride(3);
  py::gil_scoped_release release;
  if (cuda) {
#ifdef LOCALMAMBA_WITH_CUDA
    cuda::directional_scan_fwd(p);
#endif
  } else {
    directional_scan_fwd_cpu(p);
  }
}

void bwd(const std::string& device, const std::string& dtype, const std::string& bc_dtype,
         const std::vector<int64_t>& sizes, const std::vector<bool>& flags, int64_t chunk_size, uintptr_t index,
         const py::object& u, const py::object& delta, const py::object& dt, const py::object& dt_weight,
         const py::object& A, const py::object& B, const py::object& C, const py::object& D, const py::object& z,
         const py::object& delta_bias, const py::object& weights, uintptr_t chunk_states, const py::object& dout,
         const py::object& du, const py::object& ddelta, const py::object& ddt, const py::object& ddt_weight,
         const py::object& dA, const py::object& dB, const py::object& dC, const py::object& dD, const py::object& dz,
         const py::object& ddelta_bias, const py::object& dweights, uintptr_t stream, uintptr_t workspace,
         int64_t workspace_bytes) {
  const bool cuda = is_cuda_device(device);
  DirectionalScanParams p = make(dtype, bc_dtype, sizes, flags, chunk_size, index, u, delta, dt, dt_weight, A, B, C,
                                 D, z, delta_bias, weights, chunk_states, stream);
  p.workspace = reinterpret_cast<void*>(workspace);
  p.workspace_bytes = workspace_bytes;
  DirectionalScanGrads g;
  const StridedArg a_o = parse_strided_arg(dout, "directional_scan", "dout", 4, false, true);
  g.dout = a_o.ptr, g.dout_stride_batch = a_o.stride(0), g.dout_stride_direction = a_o.stride(1),
  g.dout_stride_dim = a_o.stride(2), g.dout_stride_token = a_o.stride(3);
  const StridedArg a1 = parse_strided_arg(du, "directional_scan", "du", 4, true, false);
  g.du = a1.ptr, g.du_stride_batch = a1.stride(0), g.du_stride_direction = a1.stride(1), g.du_stride_dim = a1.stride(2);
  const StridedArg a2 = parse_strided_arg(ddelta, "directional_scan", "ddelta", 4, true, false);
  g.ddelta = a2.ptr, g.ddelta_stride_batch = a2.stride(0), g.ddelta_stride_direction = a2.stride(1),
  g.ddelta_stride_dim = a2.stride(2);
  const StridedArg a3 = parse_strided_arg(ddt, "directional_scan", "ddt", 4, true, false);
  g.ddt = a3.ptr, g.ddt_stride_batch = a3.stride(0), g.ddt_stride_direction = a3.stride(1), g.ddt_stride_rank = a3.stride(2);
  const StridedArg a4 = parse_strided_arg(ddt_weight, "directional_scan", "ddt_weight", 2, false, false);
  g.ddt_weight = a4.ptr, g.ddt_weight_stride_dim = a4.stride(0), g.ddt_weight_stride_rank = a4.stride(1);
  const StridedArg a5 = parse_strided_arg(dA, "directional_scan", "dA", 2, false, false);
  g.dA = a5.ptr, g.dA_stride_dim = a5.stride(0), g.dA_stride_state = a5.stride(1);
  const StridedArg a6 = parse_strided_arg(dB, "directional_scan", "dB", 4, true, false);
  g.dB = a6.ptr, g.dB_stride_batch = a6.stride(0), g.dB_stride_direction = a6.stride(1), g.dB_stride_state = a6.stride(2);
  const StridedArg a7 = parse_strided_arg(dC, "directional_scan", "dC", 4, true, false);
  g.dC = a7.ptr, g.dC_stride_batch = a7.stride(0), g.dC_stride_direction = a7.stride(1), g.dC_stride_state = a7.stride(2);
  const StridedArg a8 = parse_strided_arg(dD, "directional_scan", "dD", 1, false, false);
  g.dD = a8.ptr, g.dD_stride = a8.stride(0);
  const StridedArg a9 = parse_strided_arg(dz, "directional_scan", "dz", 4, true, false);
  g.dz = a9.ptr, g.dz_stride_batch = a9.stride(0), g.dz_stride_direction = a9.stride(1), g.dz_stride_dim = a9.stride(2);
  const StridedArg a10 = parse_strided_arg(ddelta_bias, "directional_scan", "ddelta_bias", 1, false, false);
  g.ddelta_bias = a10.ptr, g.ddelta_bias_stride = a10.stride(0);
  const StridedArg a11 = parse_strided_arg(dweights, "directional_scan", "dweights", 1, false, false);
  g.dweights = a11.ptr, g.dweights_stride = a11.stride(0);
  py::gil_scoped_release release;
  if (cuda) {
#ifdef LOCALMAMBA_WITH_CUDA
    cuda::directional_scan_bwd(p, g);
#endif
  } else {
    directional_scan_bwd_cpu(p, g);
  }
}

}  // namespace

void register_directional_scan(py::module_& m) {
  m.def("directional_scan_fwd", &fwd, py::arg("device"), py::arg("dtype"), py::arg("bc_dtype"), py::arg("sizes"),
        py::arg("flags"), py::arg("chunk_size"), py::arg("index"), py::arg("u"), py::arg("delta"), py::arg("dt"),
        py::arg("dt_weight"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"),
        py::arg("delta_bias"), py::arg("weights"), py::arg("out"), py::arg("chunk_states"),
        py::arg("cuda_stream") = 0, py::arg("workspace") = 0, py::arg("workspace_bytes") = 0,
        "Directional selective scan forward; sizes = (batch, K, dim, length, tokens, N, dt_rank), "
        "flags = (delta_softplus, sequence_inputs, reduce_sum).");
  m.def("directional_scan_bwd", &bwd, py::arg("device"), py::arg("dtype"), py::arg("bc_dtype"), py::arg("sizes"),
        py::arg("flags"), py::arg("chunk_size"), py::arg("index"), py::arg("u"), py::arg("delta"), py::arg("dt"),
        py::arg("dt_weight"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"),
        py::arg("delta_bias"), py::arg("weights"), py::arg("chunk_states"), py::arg("dout"), py::arg("du"),
        py::arg("ddelta"), py::arg("ddt"), py::arg("ddt_weight"), py::arg("dA"), py::arg("dB"), py::arg("dC"),
        py::arg("dD"), py::arg("dz"), py::arg("ddelta_bias"), py::arg("dweights"), py::arg("cuda_stream") = 0,
        py::arg("workspace") = 0, py::arg("workspace_bytes") = 0,
        "Directional selective scan backward from the forward's chunk states.");
  m.def(
      "directional_scan_workspace_bytes",
      [](const std::string& dtype, const std::vector<int64_t>& sizes, const std::vector<bool>& flags, bool shared_u,
         bool backward) {
        if (sizes.size() != 7)
          throw std::invalid_argument("directional_scan: sizes must be (batch, K, dim, length, tokens, N, dt_rank)");
        if (flags.size() != 3) throw std::invalid_argument("directional_scan: flags must be (softplus, sequence, reduce)");
        DirectionalScanParams p;
        p.dtype = dtype_from_name(dtype);
        p.batch = sizes[0], p.num_directions = sizes[1], p.dim = sizes[2], p.length = sizes[3];
        p.num_tokens = sizes[4], p.dstate = sizes[5], p.dt_rank = sizes[6];
        p.sequence_inputs = flags[1], p.reduce_sum = flags[2];
        p.u_stride_direction = shared_u ? 0 : 1;
        return backward ? directional_scan_bwd_workspace_bytes(p) : directional_scan_fwd_workspace_bytes(p);
      },
      py::arg("dtype"), py::arg("sizes"), py::arg("flags"), py::arg("shared_u"), py::arg("backward"),
      "Bytes of scratch memory the CUDA forward / backward needs (same sizes and flags as the calls).");
}
