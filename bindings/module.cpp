// localmamba._C: thin bindings. Each entry point checks its arguments, fills a plain params
// struct and calls the CPU or CUDA implementation. Tensors arrive as raw addresses plus
// sizes and strides (the caller owns the memory), so this module never links a framework.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
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

template <size_t N>
std::array<int64_t, N> take(const std::vector<int64_t>& values, const char* name) {
  if (values.size() != N) {
    throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(N) + " values, got " +
                                std::to_string(values.size()));
  }
  std::array<int64_t, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = values[i];
  return out;
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
  return d;
}

std::vector<ScanDirection> parse_directions(const std::vector<std::string>& names) {
  if (names.empty()) throw std::invalid_argument("directions must name at least one scan direction");
  std::vector<ScanDirection> directions;
  for (const auto& name : names) directions.push_back(parse_direction(name));
  return directions;
}

// sizes = (batch, directions, channels, out_length, src_length)
void indexed_gather(uintptr_t src, uintptr_t dst, const std::string& dtype, const std::string& device,
                    const std::vector<int64_t>& sizes, const std::vector<int64_t>& src_strides,
                    const std::vector<int64_t>& dst_strides, uintptr_t index, bool sum_over_directions,
                    uintptr_t cuda_stream) {
  IndexedGatherParams p;
  p.src = reinterpret_cast<const void*>(src);
  p.dst = reinterpret_cast<void*>(dst);
  p.dtype = dtype_from_name(dtype);
  const auto s = take<5>(sizes, "sizes");
  p.batch = s[0];
  p.num_directions = s[1];
  p.channels = s[2];
  p.out_length = s[3];
  p.src_length = s[4];
  const auto ss = take<4>(src_strides, "src_strides");
  p.src_stride_batch = ss[0];
  p.src_stride_direction = ss[1];
  p.src_stride_channel = ss[2];
  p.src_stride_token = ss[3];
  const auto ds = take<4>(dst_strides, "dst_strides");
  p.dst_stride_batch = ds[0];
  p.dst_stride_direction = ds[1];
  p.dst_stride_channel = ds[2];
  p.dst_stride_token = ds[3];
  p.index = reinterpret_cast<const int64_t*>(index);
  p.sum_over_directions = sum_over_directions;
  p.cuda_stream = reinterpret_cast<void*>(cuda_stream);
  if (is_cuda_device(device)) {
#ifdef LOCALMAMBA_WITH_CUDA
    py::gil_scoped_release release;
    cuda::indexed_gather(p);
#endif
  } else {
    py::gil_scoped_release release;
    indexed_gather_cpu(p);
  }
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

  m.def("indexed_gather", &indexed_gather, py::arg("src"), py::arg("dst"), py::arg("dtype"), py::arg("device"),
        py::arg("sizes"), py::arg("src_strides"), py::arg("dst_strides"), py::arg("index"),
        py::arg("sum_over_directions"), py::arg("cuda_stream") = 0);

  register_selective_scan(m);
  register_directional_scan(m);
  register_directional_scan_infer(m);
}
