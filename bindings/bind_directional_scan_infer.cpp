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

void def_rows(py::class_<P>& cls, const std::string& name, ChannelsLastRows P::*rows) {
  const std::string what = std::string(kOp) + ": " + name;
  cls.def_property(
      name.c_str(),
      [rows](const P& p) -> std::optional<TensorArg> {
        const ChannelsLastRows& r = p.*rows;
        if (!r.ptr) return std::nullopt;
        return TensorArg{reinterpret_cast<uintptr_t>(r.ptr), {r.stride_batch, r.stride_direction, r.stride_step, 1}};
      },
      [rows, what](P& p, const std::optional<TensorArg>& arg) {
        ChannelsLastRows& r = p.*rows;
        r.ptr = nullptr, r.stride_batch = r.stride_direction = r.stride_step = 0;
        if (!arg) return;
        if (arg->strides.size() != 4)
          throw std::invalid_argument(what + " needs 4 strides, got " + std::to_string(arg->strides.size()));
        if (arg->strides[3] != 1) {
          throw std::invalid_argument(what + " must have stride 1 along its last dimension, got stride " +
                                      std::to_string(arg->strides[3]));
        }
        r.ptr = reinterpret_cast<const void*>(arg->ptr);
        r.stride_batch = arg->strides[0], r.stride_direction = arg->strides[1], r.stride_step = arg->strides[2];
      });
  cls.def_property(
      (name + "_by_token").c_str(), [rows](const P& p) { return (p.*rows).by_token; },
      [rows](P& p, bool by_token) { (p.*rows).by_token = by_token; });
}

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
  def_rows(cls, "u", &P::u);
  def_rows(cls, "delta", &P::delta);
  def_rows(cls, "dt", &P::dt);
  def_rows(cls, "B", &P::B);
  def_rows(cls, "C", &P::C);
  def_rows(cls, "z", &P::z);
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
