// Binding of scan_conv_infer's backward (CPU, scan_conv_train.h): ScanConvTrainGrads as a Python
// class with named fields (bind_common.h); the forward's params are the ScanConvInferParams bound in
// bind_mixer_infer.cpp. Every row tensor takes a TensorArg whose last (channel) stride must be 1.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_common.h"
#include "localmamba/scan_conv_train.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

void register_scan_conv_train(py::module_& m) {
  using G = ScanConvTrainGrads;
  constexpr const char* op = "scan_conv_train_bwd";
  auto cls = bind_params<G>(m, "ScanConvTrainGrads", "Output gradient, gradient outputs and workspace of one scan_conv backward.");
  def_tensor(cls, op, "dout", &G::dout, {&G::dout_stride_batch, &G::dout_stride_direction, &G::dout_stride_step}, true);
  def_tensor(cls, op, "dx", &G::dx, {&G::dx_stride_batch, &G::dx_stride_token}, true);
  cls.def_readwrite("dx_channels", &G::dx_channels);
  def_tensor(cls, op, "dweight", &G::dweight, {&G::dweight_stride_direction, &G::dweight_stride_tap}, true);
  def_tensor(cls, op, "dbias", &G::dbias, {&G::dbias_stride_direction}, true);
  def_address(cls, "workspace", &G::workspace);
  cls.def_readwrite("workspace_bytes", &G::workspace_bytes);
  m.def("scan_conv_train_workspace_bytes", &scan_conv_train_workspace_bytes, py::arg("params"),
        "Bytes of the (64-byte aligned) workspace scan_conv_train_bwd needs for these params.");
  m.def(
      "scan_conv_train_units",
      [](const ScanConvInferParams& p) {
        return py::make_tuple(scan_conv_train_units(p), scan_conv_train_reduce_units(p),
                              scan_conv_train_segment_channels(p));
      },
      py::arg("params"), "(units of the main pass, units of the reduction, channels per segment): shapes only.");
  m.def(
      op,
      [](const ScanConvInferParams& p, const G& g) {
        py::gil_scoped_release release;
        scan_conv_train_bwd_cpu(p, g);
      },
      py::arg("params"), py::arg("grads"), "Backward of scan_conv_infer (CPU): writes dx, dweight and dbias.");
}
