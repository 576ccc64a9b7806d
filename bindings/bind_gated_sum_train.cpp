// Binding of the gated sum's backward passes (CPU, gated_sum_train.h): GatedSumTrainParams as a
// Python class with named fields (bind_common.h). Every row tensor takes a TensorArg whose last
// (channel) stride must be 1.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_common.h"
#include "localmamba/gated_sum_train.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

void register_gated_sum_train(py::module_& m) {
  using P = GatedSumTrainParams;
  constexpr const char* op = "gated_sum_train";
  auto cls = bind_params<P>(m, "GatedSumTrainParams", "One pass of the backward of SCAttn's gated sum over the directions.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("dim", &P::dim).def_readwrite("num_tokens", &P::num_tokens).def_readwrite("eps", &P::eps);
  def_tensor(cls, op, "y", &P::y, {&P::y_stride_batch, &P::y_stride_direction, &P::y_stride_token}, true);
  def_tensor(cls, op, "dout", &P::dout, {&P::dout_stride_batch, &P::dout_stride_token}, true);
  def_tensor(cls, op, "gate", &P::gate, {&P::gate_stride_batch, &P::gate_stride_direction}, true);
  def_tensor(cls, op, "token_grad", &P::token_grad, {&P::token_grad_stride_batch, &P::token_grad_stride_direction}, true);
  def_address(cls, "workspace", &P::workspace);
  cls.def_readwrite("workspace_elements", &P::workspace_elements);
  def_tensor(cls, op, "out", &P::out, {&P::out_stride_batch, &P::out_stride_direction, &P::out_stride_token}, true);
  m.def("gated_sum_train_units", &gated_sum_train_units, py::arg("params"), "Work units of either pass (shapes only).");
  m.def("gated_sum_train_workspace_elements", &gated_sum_train_workspace_elements, py::arg("params"),
        "Scratch elements (of the params' dtype) gate_grad needs.");
  m.def(
      "gate_grad",
      [](const P& p) {
        py::gil_scoped_release release;
        gate_grad_cpu(p);
      },
      py::arg("params"), "ds[b,k,c] = sum_t dout[b,t,c] y[b,k,t,c] (CPU).");
  m.def(
      "gated_sum_bwd_y",
      [](const P& p) {
        py::gil_scoped_release release;
        gated_sum_bwd_y_cpu(p);
      },
      py::arg("params"), "dy of the gated sum: the gate's term plus the LayerNorm token mean's (CPU).");
}
