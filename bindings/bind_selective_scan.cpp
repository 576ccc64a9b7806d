// Bindings of the selective scan: tensors arrive as (address, strides) pairs (strides in
// elements, one per dimension, the last -- time -- must be 1) or None for optional ones.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_common.h"
#include "localmamba/dtype.h"
#include "localmamba/selective_scan.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

// sizes = (batch, dim, length, dstate, n_groups)
SelectiveScanParams make_params(const std::string& dtype, const std::string& bc_dtype, const std::vector<int64_t>& sizes,
                                bool delta_softplus, int64_t chunk_size, const py::object& u, const py::object& delta,
                                const py::object& A, const py::object& B, const py::object& C, const py::object& D,
                                const py::object& z, const py::object& delta_bias, const py::object& initial_state,
                                uintptr_t chunk_states, uintptr_t cuda_stream) {
  if (sizes.size() != 5) throw std::invalid_argument("selective_scan: sizes must be (batch, dim, length, dstate, groups)");
  SelectiveScanParams p;
  p.dtype = dtype_from_name(dtype);
  p.bc_dtype = dtype_from_name(bc_dtype);
  p.batch = sizes[0];
  p.dim = sizes[1];
  p.length = sizes[2];
  p.dstate = sizes[3];
  p.n_groups = sizes[4];
  p.delta_softplus = delta_softplus;
  p.chunk_size = chunk_size;
  const StridedArg au = parse_strided_arg(u, "selective_scan", "u", 3, true, true);
  p.u = au.ptr, p.u_stride_batch = au.stride(0), p.u_stride_dim = au.stride(1);
  const StridedArg ad = parse_strided_arg(delta, "selective_scan", "delta", 3, true, true);
  p.delta = ad.ptr, p.delta_stride_batch = ad.stride(0), p.delta_stride_dim = ad.stride(1);
  const StridedArg aA = parse_strided_arg(A, "selective_scan", "A", 2, false, true);
  p.A = aA.ptr, p.A_stride_dim = aA.stride(0), p.A_stride_state = aA.stride(1);
  const StridedArg aB = parse_strided_arg(B, "selective_scan", "B", 4, true, true);
  p.B = aB.ptr, p.B_stride_batch = aB.stride(0), p.B_stride_group = aB.stride(1), p.B_stride_state = aB.stride(2);
  const StridedArg aC = parse_strided_arg(C, "selective_scan", "C", 4, true, true);
  p.C = aC.ptr, p.C_stride_batch = aC.stride(0), p.C_stride_group = aC.stride(1), p.C_stride_state = aC.stride(2);
  const StridedArg aD = parse_strided_arg(D, "selective_scan", "D", 1, false, false);
  p.D = aD.ptr, p.D_stride = aD.stride(0);
  const StridedArg az = parse_strided_arg(z, "selective_scan", "z", 3, true, false);
  p.z = az.ptr, p.z_stride_batch = az.stride(0), p.z_stride_dim = az.stride(1);
  const StridedArg ab = parse_strided_arg(delta_bias, "selective_scan", "delta_bias", 1, false, false);
  p.delta_bias = ab.ptr, p.delta_bias_stride = ab.stride(0);
  const StridedArg ah = parse_strided_arg(initial_state, "selective_scan", "initial_state", 3, false, false);
  p.initial_state = ah.ptr, p.initial_state_stride_batch = ah.stride(0), p.initial_state_stride_dim = ah.stride(1),
  p.initial_state_stride_state = ah.stride(2);
  p.chunk_states = reinterpret_cast<void*>(chunk_states);
  p.cuda_stream = reinterpret_cast<void*>(cuda_stream);
  return p;
}

void selective_scan_fwd(const std::string& device, const std::string& dtype, const std::string& bc_dtype,
                        const std::vector<int64_t>& sizes, bool delta_softplus, int64_t chunk_size,
                        const py::object& u, const py::object& delta, const py::object& A, const py::object& B,
                        const py::object& C, const py::object& D, const py::object& z, const py::object& delta_bias,
                        const py::object& initial_state, const py::object& out, const py::object& last_state,
                        uintptr_t chunk_states, uintptr_t cuda_stream) {
  const bool is_cuda = is_cuda_device(device);
  SelectiveScanParams p = make_params(dtype, bc_dtype, sizes, delta_softplus, chunk_size, u, delta, A, B, C, D, z,
                                      delta_bias, initial_state, chunk_states, cuda_stream);
  const StridedArg ao = parse_strided_arg(out, "selective_scan", "out", 3, true, true);
  p.out = ao.ptr, p.out_stride_batch = ao.stride(0), p.out_stride_dim = ao.stride(1);
  const StridedArg al = parse_strided_arg(last_state, "selective_scan", "last_state", 3, false, false);
  p.last_state = al.ptr, p.last_state_stride_batch = al.stride(0), p.last_state_stride_dim = al.stride(1),
  p.last_state_stride_state = al.stride(2);
  py::gil_scoped_release release;
  if (is_cuda) {
#ifdef LOCALMAMBA_WITH_CUDA
    cuda::selective_scan_fwd(p);
#endif
  } else {
    selective_scan_fwd_cpu(p);
  }
}

void selective_scan_bwd(const std::string& device, const std::string& dtype, const std::string& bc_dtype,
                        const std::vector<int64_t>& sizes, bool delta_softplus, int64_t chunk_size,
                        const py::object& u, const py::object& delta, const py::object& A, const py::object& B,
                        const py::object& C, const py::object& D, const py::object& z, const py::object& delta_bias,
                        const py::object& initial_state, uintptr_t chunk_states, const py::object& dout,
                        const py::object& dlast_state, const py::object& du, const py::object& ddelta,
                        const py::object& dz, const py::object& dA, const py::object& dB, const py::object& dC,
                        const py::object& dD, const py::object& ddelta_bias, const py::object& dinitial_state,
                        uintptr_t cuda_stream, uintptr_t workspace, int64_t workspace_bytes) {
  const bool is_cuda = is_cuda_device(device);
  SelectiveScanParams p = make_params(dtype, bc_dtype, sizes, delta_softplus, chunk_size, u, delta, A, B, C, D, z,
                                      delta_bias, initial_state, chunk_states, cuda_stream);
  p.workspace = reinterpret_cast<void*>(workspace);
  p.workspace_bytes = workspace_bytes;
  SelectiveScanGrads g;
  const StridedArg ao = parse_strided_arg(dout, "selective_scan", "dout", 3, true, true);
  g.dout = ao.ptr, g.dout_stride_batch = ao.stride(0), g.dout_stride_dim = ao.stride(1);
  const StridedArg al = parse_strided_arg(dlast_state, "selective_scan", "dlast_state", 3, false, false);
  g.dlast_state = al.ptr, g.dlast_state_stride_batch = al.stride(0), g.dlast_state_stride_dim = al.stride(1),
  g.dlast_state_stride_state = al.stride(2);
  const StridedArg a1 = parse_strided_arg(du, "selective_scan", "du", 3, true, false);
  g.du = a1.ptr, g.du_stride_batch = a1.stride(0), g.du_stride_dim = a1.stride(1);
  const StridedArg a2 = parse_strided_arg(ddelta, "selective_scan", "ddelta", 3, true, false);
  g.ddelta = a2.ptr, g.ddelta_stride_batch = a2.stride(0), g.ddelta_stride_dim = a2.stride(1);
  const StridedArg a3 = parse_strided_arg(dz, "selective_scan", "dz", 3, true, false);
  g.dz = a3.ptr, g.dz_stride_batch = a3.stride(0), g.dz_stride_dim = a3.stride(1);
  const StridedArg a4 = parse_strided_arg(dA, "selective_scan", "dA", 2, false, false);
  g.dA = a4.ptr, g.dA_stride_dim = a4.stride(0), g.dA_stride_state = a4.stride(1);
  const StridedArg a5 = parse_strided_arg(dB, "selective_scan", "dB", 4, true, false);
  g.dB = a5.ptr, g.dB_stride_batch = a5.stride(0), g.dB_stride_group = a5.stride(1), g.dB_stride_state = a5.stride(2);
  const StridedArg a6 = parse_strided_arg(dC, "selective_scan", "dC", 4, true, false);
  g.dC = a6.ptr, g.dC_stride_batch = a6.stride(0), g.dC_stride_group = a6.stride(1), g.dC_stride_state = a6.stride(2);
  const StridedArg a7 = parse_strided_arg(dD, "selective_scan", "dD", 1, false, false);
  g.dD = a7.ptr, g.dD_stride = a7.stride(0);
  const StridedArg a8 = parse_strided_arg(ddelta_bias, "selective_scan", "ddelta_bias", 1, false, false);
  g.ddelta_bias = a8.ptr, g.ddelta_bias_stride = a8.stride(0);
  const StridedArg a9 = parse_strided_arg(dinitial_state, "selective_scan", "dinitial_state", 3, false, false);
  g.dinitial_state = a9.ptr, g.dinitial_state_stride_batch = a9.stride(0),
  g.dinitial_state_stride_dim = a9.stride(1), g.dinitial_state_stride_state = a9.stride(2);
  py::gil_scoped_release release;
  if (is_cuda) {
#ifdef LOCALMAMBA_WITH_CUDA
    cuda::selective_scan_bwd(p, g);
#endif
  } else {
    selective_scan_bwd_cpu(p, g);
  }
}

int64_t chunk_size_for(const std::string& device) {
  if (device == "cpu") return 64;
  if (device == "cuda") {
#ifdef LOCALMAMBA_WITH_CUDA
    return cuda::selective_scan_cuda_chunk_size();
#else
    throw std::runtime_error("no CUDA device: localmamba was built without CUDA (LOCALMAMBA_CUDA=OFF or no nvcc)");
#endif
  }
  throw std::invalid_argument("device must be 'cpu' or 'cuda', got '" + device + "'");
}

}  // namespace

void register_selective_scan(py::module_& m) {
  m.def("selective_scan_chunk_size", &chunk_size_for, py::arg("device"),
        "Time steps per saved chunk state on this device (fixes the saved-state tensor's shape).");
  m.def("selective_scan_max_dstate", [] { return kSelectiveScanMaxDstate; });
  m.def("selective_scan_cpu_isa", [] { return std::string(selective_scan_cpu_isa()); },
        "SIMD level the CPU selective scan picked at run time.");
  m.def("selective_scan_fwd", &selective_scan_fwd, py::arg("device"), py::arg("dtype"), py::arg("bc_dtype"),
        py::arg("sizes"), py::arg("delta_softplus"), py::arg("chunk_size"), py::arg("u"), py::arg("delta"),
        py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"), py::arg("delta_bias"),
        py::arg("initial_state"), py::arg("out"), py::arg("last_state"), py::arg("chunk_states"),
        py::arg("cuda_stream") = 0,
        "Selective scan forward. Tensors are (address, strides) or None; sizes = (batch, dim, L, N, groups).");
  m.def("selective_scan_bwd", &selective_scan_bwd, py::arg("device"), py::arg("dtype"), py::arg("bc_dtype"),
        py::arg("sizes"), py::arg("delta_softplus"), py::arg("chunk_size"), py::arg("u"), py::arg("delta"),
        py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"), py::arg("delta_bias"),
        py::arg("initial_state"), py::arg("chunk_states"), py::arg("dout"), py::arg("dlast_state"), py::arg("du"),
        py::arg("ddelta"), py::arg("dz"), py::arg("dA"), py::arg("dB"), py::arg("dC"), py::arg("dD"),
        py::arg("ddelta_bias"), py::arg("dinitial_state"), py::arg("cuda_stream") = 0, py::arg("workspace") = 0,
        py::arg("workspace_bytes") = 0,
        "Selective scan backward from the chunk states saved by the forward; `workspace` (CUDA scratch, "
        "selective_scan_bwd_workspace_bytes bytes) is an address.");
  m.def(
      "selective_scan_bwd_workspace_bytes",
      [](const std::string& dtype, const std::vector<int64_t>& sizes) {
        if (sizes.size() != 5) throw std::invalid_argument("selective_scan: sizes must be (batch, dim, length, dstate, groups)");
        SelectiveScanParams p;
        p.dtype = dtype_from_name(dtype);
        p.batch = sizes[0], p.dim = sizes[1], p.length = sizes[2], p.dstate = sizes[3], p.n_groups = sizes[4];
        return selective_scan_bwd_workspace_bytes(p);
      },
      py::arg("dtype"), py::arg("sizes"), "Bytes of scratch memory the CUDA backward needs.");
}
