// Bindings of the directional selective scan: DirectionalScanParams / DirectionalScanGrads as
// Python classes with named fields (see bind_common.h); the index table is an address.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "bind_common.h"
#include "localmamba/directional_scan.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

constexpr const char* kOp = "directional_scan";
using P = DirectionalScanParams;
using G = DirectionalScanGrads;

void bind_params_class(py::module_& m) {
  auto cls = bind_params<P>(m, "DirectionalScanParams",
                            "Sizes, options and tensors of one directional scan call (directional_scan.h).");
  def_dtype(cls, "dtype", &P::dtype);
  def_dtype(cls, "bc_dtype", &P::bc_dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("length", &P::length).def_readwrite("num_tokens", &P::num_tokens);
  cls.def_readwrite("dstate", &P::dstate).def_readwrite("dt_rank", &P::dt_rank);
  cls.def_readwrite("chunk_size", &P::chunk_size).def_readwrite("delta_softplus", &P::delta_softplus);
  cls.def_readwrite("sequence_inputs", &P::sequence_inputs).def_readwrite("reduce_sum", &P::reduce_sum);
  def_address(cls, "index", &P::index);
  def_tensor(cls, kOp, "u", &P::u, {&P::u_stride_batch, &P::u_stride_direction, &P::u_stride_dim}, true);
  def_tensor(cls, kOp, "delta", &P::delta,
             {&P::delta_stride_batch, &P::delta_stride_direction, &P::delta_stride_dim}, true);
  def_tensor(cls, kOp, "dt", &P::dt, {&P::dt_stride_batch, &P::dt_stride_direction, &P::dt_stride_rank}, true);
  def_tensor(cls, kOp, "dt_weight", &P::dt_weight, {&P::dt_weight_stride_dim, &P::dt_weight_stride_rank}, false);
  def_tensor(cls, kOp, "A", &P::A, {&P::A_stride_dim, &P::A_stride_state}, false);
  def_tensor(cls, kOp, "B", &P::B, {&P::B_stride_batch, &P::B_stride_direction, &P::B_stride_state}, true);
  def_tensor(cls, kOp, "C", &P::C, {&P::C_stride_batch, &P::C_stride_direction, &P::C_stride_state}, true);
  def_tensor(cls, kOp, "D", &P::D, {&P::D_stride}, false);
  def_tensor(cls, kOp, "z", &P::z, {&P::z_stride_batch, &P::z_stride_direction, &P::z_stride_dim}, true);
  def_tensor(cls, kOp, "delta_bias", &P::delta_bias, {&P::delta_bias_stride}, false);
  def_tensor(cls, kOp, "weights", &P::weights, {&P::weights_stride}, false);
  def_tensor(cls, kOp, "out", &P::out,
             {&P::out_stride_batch, &P::out_stride_direction, &P::out_stride_dim, &P::out_stride_token}, false);
  def_address(cls, "chunk_states", &P::chunk_states);
  def_address(cls, "workspace", &P::workspace);
  cls.def_readwrite("workspace_bytes", &P::workspace_bytes);
  def_address(cls, "cuda_stream", &P::cuda_stream);
  cls.def_property_readonly("fwd_workspace_bytes", &directional_scan_fwd_workspace_bytes,
                            "Bytes of scratch memory the CUDA forward needs for these sizes and options.");
  cls.def_property_readonly("bwd_workspace_bytes", &directional_scan_bwd_workspace_bytes,
                            "Bytes of scratch memory the CUDA backward needs (u's direction stride included).");
}

void bind_grads_class(py::module_& m) {
  auto cls = bind_params<G>(m, "DirectionalScanGrads",
                            "Output gradient in, input gradients out, of one directional scan backward.");
  def_tensor(cls, kOp, "dout", &G::dout,
             {&G::dout_stride_batch, &G::dout_stride_direction, &G::dout_stride_dim, &G::dout_stride_token}, false);
  def_tensor(cls, kOp, "du", &G::du, {&G::du_stride_batch, &G::du_stride_direction, &G::du_stride_dim}, true);
  def_tensor(cls, kOp, "ddelta", &G::ddelta,
             {&G::ddelta_stride_batch, &G::ddelta_stride_direction, &G::ddelta_stride_dim}, true);
  def_tensor(cls, kOp, "ddt", &G::ddt, {&G::ddt_stride_batch, &G::ddt_stride_direction, &G::ddt_stride_rank}, true);
  def_tensor(cls, kOp, "ddt_weight", &G::ddt_weight, {&G::ddt_weight_stride_dim, &G::ddt_weight_stride_rank}, false);
  def_tensor(cls, kOp, "dA", &G::dA, {&G::dA_stride_dim, &G::dA_stride_state}, false);
  def_tensor(cls, kOp, "dB", &G::dB, {&G::dB_stride_batch, &G::dB_stride_direction, &G::dB_stride_state}, true);
  def_tensor(cls, kOp, "dC", &G::dC, {&G::dC_stride_batch, &G::dC_stride_direction, &G::dC_stride_state}, true);
  def_tensor(cls, kOp, "dD", &G::dD, {&G::dD_stride}, false);
  def_tensor(cls, kOp, "dz", &G::dz, {&G::dz_stride_batch, &G::dz_stride_direction, &G::dz_stride_dim}, true);
  def_tensor(cls, kOp, "ddelta_bias", &G::ddelta_bias, {&G::ddelta_bias_stride}, false);
  def_tensor(cls, kOp, "dweights", &G::dweights, {&G::dweights_stride}, false);
}

}  // namespace

void register_directional_scan(py::module_& m) {
  bind_params_class(m);
  bind_grads_class(m);
  m.def(
      "directional_scan_fwd",
      [](const std::string& device, const P& p) {
        run_on_device(device, [&] { directional_scan_fwd_cpu(p); },
                      [&] { LOCALMAMBA_CUDA_CALL(cuda::directional_scan_fwd(p)); });
      },
      py::arg("device"), py::arg("params"),
      "Directional selective scan forward: writes params.out and params.chunk_states.");
  m.def(
      "directional_scan_bwd",
      [](const std::string& device, const P& p, const G& g) {
        run_on_device(device, [&] { directional_scan_bwd_cpu(p, g); },
                      [&] { LOCALMAMBA_CUDA_CALL(cuda::directional_scan_bwd(p, g)); });
      },
      py::arg("device"), py::arg("params"), py::arg("grads"),
      "Directional selective scan backward from the forward's chunk states.");
}
