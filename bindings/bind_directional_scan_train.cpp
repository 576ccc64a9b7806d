// Binding of the channels-last directional scan's backward (CPU): DirectionalScanTrainGrads as
// a Python class with named fields (bind_common.h); the forward's params are the
// DirectionalScanInferParams bound in bind_directional_scan_infer.cpp. A row set (dout, du,
// ddelta, dB, dC, dz, ddt) takes a TensorArg with (batch, direction, step, inner) strides, unit inner
// stride, or None; whether its steps are tokens read through the index is `<name>_by_token`.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "bind_common.h"
#include "localmamba/directional_scan_train.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

constexpr const char* kOp = "directional_scan_train_bwd";
using G = DirectionalScanTrainGrads;

}  // namespace

void register_directional_scan_train(py::module_& m) {
  auto cls = bind_params<G>(m, "DirectionalScanTrainGrads",
                            "Output gradient, gradient outputs and workspace of one channels-last scan backward.");
  def_rows(cls, kOp, "dout", &G::dout);
  def_rows(cls, kOp, "du", &G::du);
  def_rows(cls, kOp, "ddelta", &G::ddelta);
  def_rows(cls, kOp, "dB", &G::dB);
  def_rows(cls, kOp, "dC", &G::dC);
  def_rows(cls, kOp, "dz", &G::dz);
  def_rows(cls, kOp, "ddt", &G::ddt);
  def_tensor(cls, kOp, "dA", &G::dA, {&G::dA_stride_dim, &G::dA_stride_state}, false);
  def_tensor(cls, kOp, "dD", &G::dD, {&G::dD_stride}, false);
  def_tensor(cls, kOp, "ddelta_bias", &G::ddelta_bias, {&G::ddelta_bias_stride}, false);
  def_tensor(cls, kOp, "ddt_weight", &G::ddt_weight, {&G::ddt_weight_stride_dim, &G::ddt_weight_stride_rank}, false);
  def_address(cls, "workspace", &G::workspace);
  cls.def_readwrite("workspace_bytes", &G::workspace_bytes);
  m.def("directional_scan_train_workspace_bytes", &directional_scan_train_workspace_bytes, py::arg("params"),
        "Bytes of the workspace directional_scan_train_bwd needs for these params.");
  m.def("directional_scan_train_units", &directional_scan_train_units, py::arg("params"),
        "Work units of directional_scan_train_bwd for these params (batch * K * channel segments).");
  m.def(
      "directional_scan_train_bwd",
      [](const DirectionalScanInferParams& p, const G& g) {
        py::gil_scoped_release release;
        directional_scan_train_bwd_cpu(p, g);
      },
      py::arg("params"), py::arg("grads"),
      "Backward of the channels-last directional scan (CPU): writes the gradients in grads.");
}
