// Binding of the forward-only channels-last directional scan (CPU). Row sets arrive as
// (address, (batch, direction, step, inner) strides) with unit inner stride, or None.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_common.h"
#include "localmamba/directional_scan_infer.h"
#include "localmamba/dtype.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

namespace {

constexpr const char* kOp = "directional_scan_infer";

ChannelsLastRows rows(const py::object& obj, const char* name, bool required, bool by_token) {
  const StridedArg a = parse_strided_arg(obj, kOp, name, 4, true, required);
  ChannelsLastRows r;
  r.ptr = a.ptr, r.stride_batch = a.stride(0), r.stride_direction = a.stride(1), r.stride_step = a.stride(2);
  r.by_token = by_token;
  return r;
}

// sizes = (batch, K, dim, length, tokens, N, dt_rank); by_token = (u, delta / dt, B, C, z)
void infer(const std::string& dtype, const std::vector<int64_t>& sizes, bool delta_softplus, uintptr_t index,
           const std::vector<bool>& by_token, const py::object& u, const py::object& delta, const py::object& dt,
           const py::object& dt_weight, const py::object& A, const py::object& B, const py::object& C,
           const py::object& D, const py::object& z, const py::object& delta_bias, const py::object& weights,
           const py::object& out) {
  if (sizes.size() != 7)
    throw std::invalid_argument("directional_scan_infer: sizes must be (batch, K, dim, length, tokens, N, dt_rank)");
  if (by_token.size() != 5) throw std::invalid_argument("directional_scan_infer: by_token must be (u, delta, B, C, z)");
  DirectionalScanInferParams p;
  p.dtype = dtype_from_name(dtype);
  p.batch = sizes[0], p.num_directions = sizes[1], p.dim = sizes[2], p.length = sizes[3], p.num_tokens = sizes[4];
  p.dstate = sizes[5], p.dt_rank = sizes[6];
  p.delta_softplus = delta_softplus;
  p.index = reinterpret_cast<const int64_t*>(index);
  p.u = rows(u, "u", true, by_token[0]);
  p.delta = rows(delta, "delta", false, by_token[1]);
  p.dt = rows(dt, "dt", false, by_token[1]);
  p.B = rows(B, "B", true, by_token[2]);
  p.C = rows(C, "C", true, by_token[3]);
  p.z = rows(z, "z", false, by_token[4]);
  const StridedArg a_w = parse_strided_arg(dt_weight, kOp, "dt_weight", 2, false, false);
  p.dt_weight = a_w.ptr, p.dt_weight_stride_dim = a_w.stride(0), p.dt_weight_stride_rank = a_w.stride(1);
  const StridedArg a_A = parse_strided_arg(A, kOp, "A", 2, false, true);
  p.A = a_A.ptr, p.A_stride_dim = a_A.stride(0), p.A_stride_state = a_A.stride(1);
  const StridedArg a_D = parse_strided_arg(D, kOp, "D", 1, false, false);
  p.D = a_D.ptr, p.D_stride = a_D.stride(0);
  const StridedArg a_b = parse_strided_arg(delta_bias, kOp, "delta_bias", 1, false, false);
  p.delta_bias = a_b.ptr, p.delta_bias_stride = a_b.stride(0);
  const StridedArg a_wt = parse_strided_arg(weights, kOp, "weights", 1, false, false);
  p.weights = a_wt.ptr, p.weights_stride = a_wt.stride(0);
  const StridedArg a_o = parse_strided_arg(out, kOp, "out", 4, true, true);
  p.out = a_o.ptr, p.out_stride_batch = a_o.stride(0), p.out_stride_direction = a_o.stride(1);
  p.out_stride_token = a_o.stride(2);
  py::gil_scoped_release release;
  directional_scan_infer_cpu(p);
}

}  // namespace

void register_directional_scan_infer(py::module_& m) {
  m.def("directional_scan_infer", &infer, py::arg("dtype"), py::arg("sizes"), py::arg("delta_softplus"),
        py::arg("index"), py::arg("by_token"), py::arg("u"), py::arg("delta"), py::arg("dt"), py::arg("dt_weight"),
        py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"), py::arg("z"), py::arg("delta_bias"),
        py::arg("weights"), py::arg("out"),
        "Forward-only channels-last directional scan (CPU); sizes = (batch, K, dim, length, tokens, N, dt_rank).");
}
