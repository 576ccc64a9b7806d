// Bindings of the mixers' forward-only passes (CPU, mixer_infer.h): ScanConvInferParams,
// GateStatsInferParams and GatedMergeInferParams as Python classes with named fields
// (bind_common.h). Every row tensor takes a TensorArg whose last (channel) stride must be 1.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_common.h"
#include "localmamba/mixer_infer.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

void register_scan_conv(py::module_& m) {
  using P = ScanConvInferParams;
  constexpr const char* op = "scan_conv_infer";
  auto cls = bind_params<P>(m, "ScanConvInferParams", "LocalVim's causal conv1d + SiLU read through the scan index.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("length", &P::length).def_readwrite("num_tokens", &P::num_tokens);
  cls.def_readwrite("taps", &P::taps).def_readwrite("silu", &P::silu);
  def_address(cls, "index", &P::index);
  def_tensor(cls, op, "x", &P::x, {&P::x_stride_batch, &P::x_stride_token}, true);
  def_tensor(cls, op, "weight", &P::weight, {&P::weight_stride_direction, &P::weight_stride_tap}, true);
  def_tensor(cls, op, "bias", &P::bias, {&P::bias_stride_direction}, true);
  def_tensor(cls, op, "out", &P::out, {&P::out_stride_batch, &P::out_stride_direction, &P::out_stride_step}, true);
  m.def("scan_conv_infer_units", &scan_conv_infer_units, py::arg("params"), "Work units of a call (shapes only).");
  m.def(
      op,
      [](const P& p) {
        py::gil_scoped_release release;
        scan_conv_infer_cpu(p);
      },
      py::arg("params"), "Causal depthwise conv1d (+ SiLU) along each scan, read through the index (CPU).");
}

void register_gate_stats(py::module_& m) {
  using P = GateStatsInferParams;
  constexpr const char* op = "gate_stats_infer";
  auto cls = bind_params<P>(m, "GateStatsInferParams", "SCAttn's token mean of a LayerNorm without affine.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("num_tokens", &P::num_tokens).def_readwrite("eps", &P::eps);
  def_tensor(cls, op, "y", &P::y, {&P::y_stride_batch, &P::y_stride_direction, &P::y_stride_token}, true);
  def_address(cls, "workspace", &P::workspace);
  cls.def_readwrite("workspace_elements", &P::workspace_elements);
  def_tensor(cls, op, "out", &P::out, {&P::out_stride_batch, &P::out_stride_direction}, true);
  m.def("gate_stats_infer_units", &gate_stats_infer_units, py::arg("params"), "Work units of a call (shapes only).");
  m.def("gate_stats_infer_workspace_elements", &gate_stats_infer_workspace_elements, py::arg("params"),
        "Scratch elements (of the params' dtype) a call needs.");
  m.def(
      op,
      [](const P& p) {
        py::gil_scoped_release release;
        gate_stats_infer_cpu(p);
      },
      py::arg("params"), "Token mean of each direction's LayerNorm (no affine) (CPU).");
}

void register_gated_merge(py::module_& m) {
  using P = GatedMergeInferParams;
  constexpr const char* op = "gated_merge_infer";
  auto cls = bind_params<P>(m, "GatedMergeInferParams", "Sum of the gated directions, optional LayerNorm and z gate.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("num_tokens", &P::num_tokens);
  cls.def_readwrite("normalize", &P::normalize).def_readwrite("eps", &P::eps).def_readwrite("z_silu", &P::z_silu);
  def_tensor(cls, op, "y", &P::y, {&P::y_stride_batch, &P::y_stride_direction, &P::y_stride_token}, true);
  def_tensor(cls, op, "gate", &P::gate, {&P::gate_stride_batch, &P::gate_stride_direction}, true);
  def_tensor(cls, op, "norm_weight", &P::norm_weight, {}, true);
  def_tensor(cls, op, "norm_bias", &P::norm_bias, {}, true);
  def_tensor(cls, op, "z", &P::z, {&P::z_stride_batch, &P::z_stride_token}, true);
  def_tensor(cls, op, "out", &P::out, {&P::out_stride_batch, &P::out_stride_token}, true);
  m.def("gated_merge_infer_units", &gated_merge_infer_units, py::arg("params"), "Work units of a call (shapes only).");
  m.def(
      op,
      [](const P& p) {
        py::gil_scoped_release release;
        gated_merge_infer_cpu(p);
      },
      py::arg("params"), "sum_k gate_k * y_k, then optionally LayerNorm and * z / silu(z) (CPU).");
}

}  // namespace

void register_mixer_infer(py::module_& m) {
  register_scan_conv(m);
  register_gate_stats(m);
  register_gated_merge(m);
}
