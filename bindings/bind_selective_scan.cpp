// Bindings of the selective scan: SelectiveScanParams / SelectiveScanGrads as Python classes
// with named fields (see bind_common.h); (B, D, L) / (B, G, N, L) tensors must have stride 1
// along L, which their setters check.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bind_common.h"
#include "localmamba/selective_scan.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

constexpr const char* kOp = "selective_scan";
using P = SelectiveScanParams;
using G = SelectiveScanGrads;

void bind_params_class(py::module_& m) {
  auto cls = bind_params<P>(m, "SelectiveScanParams",
                            "Sizes, options and tensors of one selective scan call (selective_scan.h).");
  def_dtype(cls, "dtype", &P::dtype);
  def_dtype(cls, "bc_dtype", &P::bc_dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("dim", &P::dim).def_readwrite("length", &P::length);
  cls.def_readwrite("dstate", &P::dstate).def_readwrite("n_groups", &P::n_groups);
  cls.def_readwrite("chunk_size", &P::chunk_size).def_readwrite("delta_softplus", &P::delta_softplus);
  def_tensor(cls, kOp, "u", &P::u, {&P::u_stride_batch, &P::u_stride_dim}, true);
  def_tensor(cls, kOp, "delta", &P::delta, {&P::delta_stride_batch, &P::delta_stride_dim}, true);
  def_tensor(cls, kOp, "A", &P::A, {&P::A_stride_dim, &P::A_stride_state}, false);
  def_tensor(cls, kOp, "B", &P::B, {&P::B_stride_batch, &P::B_stride_group, &P::B_stride_state}, true);
  def_tensor(cls, kOp, "C", &P::C, {&P::C_stride_batch, &P::C_stride_group, &P::C_stride_state}, true);
  def_tensor(cls, kOp, "D", &P::D, {&P::D_stride}, false);
  def_tensor(cls, kOp, "z", &P::z, {&P::z_stride_batch, &P::z_stride_dim}, true);
  def_tensor(cls, kOp, "delta_bias", &P::delta_bias, {&P::delta_bias_stride}, false);
  def_tensor(cls, kOp, "initial_state", &P::initial_state,
             {&P::initial_state_stride_batch, &P::initial_state_stride_dim, &P::initial_state_stride_state}, false);
  def_tensor(cls, kOp, "out", &P::out, {&P::out_stride_batch, &P::out_stride_dim}, true);
  def_tensor(cls, kOp, "last_state", &P::last_state,
             {&P::last_state_stride_batch, &P::last_state_stride_dim, &P::last_state_stride_state}, false);
  def_address(cls, "chunk_states", &P::chunk_states);
  def_address(cls, "workspace", &P::workspace);
  cls.def_readwrite("workspace_bytes", &P::workspace_bytes);
  def_address(cls, "cuda_stream", &P::cuda_stream);
  cls.def_property_readonly("bwd_workspace_bytes", &selective_scan_bwd_workspace_bytes,
                            "Bytes of scratch memory the CUDA backward needs for these sizes.");
}

void bind_grads_class(py::module_& m) {
  auto cls = bind_params<G>(m, "SelectiveScanGrads",
                            "Output gradient in, input gradients out, of one selective scan backward.");
  def_tensor(cls, kOp, "dout", &G::dout, {&G::dout_stride_batch, &G::dout_stride_dim}, true);
  def_tensor(cls, kOp, "dlast_state", &G::dlast_state,
             {&G::dlast_state_stride_batch, &G::dlast_state_stride_dim, &G::dlast_state_stride_state}, false);
  def_tensor(cls, kOp, "du", &G::du, {&G::du_stride_batch, &G::du_stride_dim}, true);
  def_tensor(cls, kOp, "ddelta", &G::ddelta, {&G::ddelta_stride_batch, &G::ddelta_stride_dim}, true);
  def_tensor(cls, kOp, "dz", &G::dz, {&G::dz_stride_batch, &G::dz_stride_dim}, true);
  def_tensor(cls, kOp, "dA", &G::dA, {&G::dA_stride_dim, &G::dA_stride_state}, false);
  def_tensor(cls, kOp, "dB", &G::dB, {&G::dB_stride_batch, &G::dB_stride_group, &G::dB_stride_state}, true);
  def_tensor(cls, kOp, "dC", &G::dC, {&G::dC_stride_batch, &G::dC_stride_group, &G::dC_stride_state}, true);
  def_tensor(cls, kOp, "dD", &G::dD, {&G::dD_stride}, false);
  def_tensor(cls, kOp, "ddelta_bias", &G::ddelta_bias, {&G::ddelta_bias_stride}, false);
  def_tensor(cls, kOp, "dinitial_state", &G::dinitial_state,
             {&G::dinitial_state_stride_batch, &G::dinitial_state_stride_dim, &G::dinitial_state_stride_state}, false);
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
  bind_params_class(m);
  bind_grads_class(m);
  m.def("selective_scan_chunk_size", &chunk_size_for, py::arg("device"),
        "Time steps per saved chunk state on this device (fixes the saved-state tensor's shape).");
  m.def("selective_scan_max_dstate", [] { return kSelectiveScanMaxDstate; });
  m.def("selective_scan_cpu_isa", [] { return std::string(selective_scan_cpu_isa()); },
        "SIMD level the CPU selective scan picked at run time.");
  m.def(
      "selective_scan_fwd",
      [](const std::string& device, const P& p) {
        run_on_device(
            device, [&] { selective_scan_fwd_cpu(p); }, [&] { LOCALMAMBA_CUDA_CALL(cuda::selective_scan_fwd(p)); });
      },
      py::arg("device"), py::arg("params"),
      "Selective scan forward: writes params.out, params.last_state (if set) and params.chunk_states.");
  m.def(
      "selective_scan_bwd",
      [](const std::string& device, const P& p, const G& g) {
        run_on_device(device, [&] { selective_scan_bwd_cpu(p, g); },
                      [&] { LOCALMAMBA_CUDA_CALL(cuda::selective_scan_bwd(p, g)); });
      },
      py::arg("device"), py::arg("params"), py::arg("grads"),
      "Selective scan backward from the chunk states saved by the forward; params.workspace (CUDA scratch, "
      "params.bwd_workspace_bytes bytes) is an address.");
}
