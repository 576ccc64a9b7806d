// Binding of the forward-only channels-last directional scan (CPU): DirectionalScanInferParams
// as a Python class with named fields (bind_common.h). A row set (u, delta, dt, B, C, z) takes a
// TensorArg with (batch, direction, step, inner) strides, unit inner stride, or None; whether
// its steps are tokens read through the index is the field `<name>_by_token`.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "bind_common.h"
#include "localmamba/directional_scan_infer.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

constexpr const char* kOp = "directional_scan_infer";
using P = DirectionalScanInferParams;

}  // namespace

void register_directional_scan_infer(py::module_& m) {
  auto cls = bind_params<P>(m, "DirectionalScanInferParams",
                            "Sizes, options and tensors of one forward-only channels-last directional scan.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("length", &P::length).def_readwrite("num_tokens", &P::num_tokens);
  cls.def_readwrite("dstate", &P::dstate).def_readwrite("dt_rank", &P::dt_rank);
  cls.def_readwrite("delta_softplus", &P::delta_softplus);
  def_address(cls, "index", &P::index);
  def_rows(cls, kOp, "u", &P::u);
  def_rows(cls, kOp, "delta", &P::delta);
  def_rows(cls, kOp, "dt", &P::dt);
  def_rows(cls, kOp, "B", &P::B);
  def_rows(cls, kOp, "C", &P::C);
  def_rows(cls, kOp, "z", &P::z);
  def_tensor(cls, kOp, "A", &P::A, {&P::A_stride_dim, &P::A_stride_state}, false);
  def_tensor(cls, kOp, "dt_weight", &P::dt_weight, {&P::dt_weight_stride_dim, &P::dt_weight_stride_rank}, false);
  def_tensor(cls, kOp, "D", &P::D, {&P::D_stride}, false);
  def_tensor(cls, kOp, "delta_bias", &P::delta_bias, {&P::delta_bias_stride}, false);
  def_tensor(cls, kOp, "weights", &P::weights, {&P::weights_stride}, false);
  def_tensor(cls, kOp, "out", &P::out, {&P::out_stride_batch, &P::out_stride_direction, &P::out_stride_token}, true);
  m.def("directional_scan_infer_units", &directional_scan_infer_units, py::arg("params"),
        "Work units of a call: batch * K * ceil(dim / 16), shapes only.");
  m.def(
      "directional_scan_infer",
      [](const P& p) {
        py::gil_scoped_release release;
        directional_scan_infer_cpu(p);
      },
      py::arg("params"), "Forward-only channels-last directional scan (CPU): writes params.out.");
}
