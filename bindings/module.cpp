// localmamba._C: thin bindings. Each kernel's plain params struct is a Python class with named
// fields (bind_common.h); an entry point takes the device and those structs and calls the CPU or
// CUDA implementation. Tensors arrive as raw addresses plus strides (the caller owns the
// memory), so this module never links a framework.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_common.h"
#include "localmamba/build_info.h"
#include "localmamba/indexed_gather.h"
#include "localmamba/parallel.h"
#include "localmamba/scan_order.h"

namespace py = pybind11;
using namespace localmamba;
using namespace localmamba::bindings;

void register_selective_scan(py::module_& m);  // bind_selective_scan.cpp
void register_directional_scan(py::module_& m);  // bind_directional_scan.cpp
void register_directional_scan_infer(py::module_& m);  // bind_directional_scan_infer.cpp
void register_directional_scan_train(py::module_& m);  // bind_directional_scan_train.cpp
void register_mixer_infer(py::module_& m);  // bind_mixer_infer.cpp
void register_scan_conv_train(py::module_& m);  // bind_scan_conv_train.cpp
void register_gated_sum_train(py::module_& m);  // bind_gated_sum_train.cpp

namespace {

bool cuda_compiled() {
#ifdef LOCALMAMBA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef LOCALMAMBA_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

py::dict build_info() {
  const BuildInfo info = get_build_info();
  py::dict d;
  d["version"] = info.version;
  d["compiler"] = info.compiler;
  d["simd_compiled"] = info.simd_compiled;
  d["simd_runtime"] = info.simd_runtime;
  d["cuda_compiled"] = cuda_compiled();
#ifdef LOCALMAMBA_WITH_CUDA
  d["cuda_architectures"] = cuda::compiled_architectures();
  d["cuda_runtime_version"] = cuda::runtime_version();
#else
  d["cuda_architectures"] = "";
  d["cuda_runtime_version"] = 0;
#endif
  d["cuda_status"] = cuda_status();
  d["num_threads"] = get_num_threads();
  d["thread_pool"] = thread_pool_kind();
  return d;
}

std::vector<ScanDirection> parse_directions(const std::vector<std::string>& names) {
  if (names.empty()) throw std::invalid_argument("directions must name at least one scan direction");
  std::vector<ScanDirection> directions;
  for (const auto& name : names) directions.push_back(parse_direction(name));
  return directions;
}

void bind_tensor_arg(py::module_& m) {
  py::class_<TensorArg>(m, "TensorArg", "A strided tensor: its address and strides in elements (one per dimension).")
      .def(py::init<uintptr_t, std::vector<int64_t>>(), py::arg("ptr"), py::arg("strides"))
      .def_readwrite("ptr", &TensorArg::ptr)
      .def_readwrite("strides", &TensorArg::strides)
      .def("__repr__", [](const TensorArg& t) {
        std::string strides;
        for (int64_t s : t.strides) strides += (strides.empty() ? "" : ", ") + std::to_string(s);
        return "TensorArg(ptr=" + std::to_string(t.ptr) + ", strides=[" + strides + "])";
      });
}

void bind_indexed_gather(py::module_& m) {
  using P = IndexedGatherParams;
  auto cls = bind_params<P>(m, "IndexedGatherParams", "Sizes, tensors and index table of one indexed gather.");
  def_dtype(cls, "dtype", &P::dtype);
  cls.def_readwrite("batch", &P::batch).def_readwrite("num_directions", &P::num_directions);
  cls.def_readwrite("channels", &P::channels).def_readwrite("out_length", &P::out_length);
  cls.def_readwrite("src_length", &P::src_length).def_readwrite("sum_over_directions", &P::sum_over_directions);
  def_tensor(cls, "indexed_gather", "src", &P::src,
             {&P::src_stride_batch, &P::src_stride_direction, &P::src_stride_channel, &P::src_stride_token}, false);
  def_tensor(cls, "indexed_gather", "dst", &P::dst,
             {&P::dst_stride_batch, &P::dst_stride_direction, &P::dst_stride_channel, &P::dst_stride_token}, false);
  def_address(cls, "index", &P::index);
  def_address(cls, "cuda_stream", &P::cuda_stream);
  m.def(
      "indexed_gather",
      [](const std::string& device, const P& p) {
        run_on_device(device, [&] { indexed_gather_cpu(p); }, [&] { LOCALMAMBA_CUDA_CALL(cuda::indexed_gather(p)); });
      },
      py::arg("device"), py::arg("params"),
      "dst[b, k, c, i] = src[b, k, c, index[k, i]] (0 at index -1), or summed over k (indexed_gather.h).");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "LocalMamba native kernels (C++ core and optional CUDA); framework-independent.";
  m.def("build_info", &build_info, "Version, compiler, SIMD level and CUDA build facts.");
  m.def("cuda_compiled", &cuda_compiled);
  m.def("cuda_device_count", &cuda_device_count, "Usable CUDA devices; 0 without a device or driver.");
  m.def("cuda_status", &cuda_status);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("num_threads"),
        "Threads used by the CPU kernels (< 1 restores the default).");

  m.def(
      "scan_families",
      [] {
        std::vector<std::string> patterns;
        for (const auto& family : scan_families()) patterns.emplace_back(family.pattern);
        return patterns;
      },
      "The scan-order families' name patterns ('{K}' = window size), in table order.");
  m.def("canonical_direction", [](const std::string& name) { return parse_direction(name).name(); },
        py::arg("direction"));
  m.def("scan_length",
        [](const std::string& name, int64_t h, int64_t w) { return scan_length(parse_direction(name), h, w); },
        py::arg("direction"), py::arg("H"), py::arg("W"));
  m.def("scan_order",
        [](const std::string& name, int64_t h, int64_t w) { return scan_order(parse_direction(name), h, w); },
        py::arg("direction"), py::arg("H"), py::arg("W"),
        "Spatial positions visited by a scan direction; -1 marks padding tokens.");
  m.def(
      "scan_index_maps",
      [](const std::vector<std::string>& names, int64_t h, int64_t w) {
        const ScanIndexMaps maps = build_scan_index_maps(parse_directions(names), h, w);
        return py::make_tuple(maps.forward, maps.inverse, maps.max_length);
      },
      py::arg("directions"), py::arg("H"), py::arg("W"),
      "(forward (K*Lmax), inverse (K*H*W), Lmax) index tables as flat lists.");

  bind_tensor_arg(m);
  bind_indexed_gather(m);

  register_selective_scan(m);
  register_directional_scan(m);
  register_directional_scan_infer(m);
  register_directional_scan_train(m);
  register_mixer_infer(m);
  register_scan_conv_train(m);
  register_gated_sum_train(m);
}
