// Shared by the binding files: tensors cross the boundary as (address, strides) pairs
// (strides in elements, one per dimension) or None; devices as "cpu" / "cuda".
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef LOCALMAMBA_WITH_CUDA
#include "localmamba_cuda.h"
#endif

namespace localmamba {
namespace bindings {

struct StridedArg {
  void* ptr = nullptr;
  std::vector<int64_t> strides;
  int64_t stride(size_t i) const { return strides.empty() ? 0 : strides[i]; }
};

// `unit_last`: the last dimension (time / tokens) must have stride 1.
inline StridedArg parse_strided_arg(const pybind11::object& obj, const char* op, const char* name, size_t rank,
                                    bool unit_last, bool required) {
  StridedArg arg;
  const std::string prefix = std::string(op) + ": " + name;
  if (obj.is_none()) {
    if (required) throw std::invalid_argument(prefix + " is required");
    return arg;
  }
  auto pair = obj.cast<pybind11::tuple>();
  if (pair.size() != 2) throw std::invalid_argument(prefix + " must be (address, strides)");
  arg.ptr = reinterpret_cast<void*>(pair[0].cast<uintptr_t>());
  arg.strides = pair[1].cast<std::vector<int64_t>>();
  if (arg.strides.size() != rank) {
    throw std::invalid_argument(prefix + " needs " + std::to_string(rank) + " strides, got " +
                                std::to_string(arg.strides.size()));
  }
  if (unit_last && arg.strides.back() != 1) {
    throw std::invalid_argument(prefix + " must have stride 1 along its last dimension, got stride " +
                                std::to_string(arg.strides.back()));
  }
  return arg;
}

// "N CUDA device(s)", or why there is none ("no CUDA device: ...").
inline std::string cuda_status() {
#ifdef LOCALMAMBA_WITH_CUDA
  return cuda::device_status();
#else
  return "no CUDA device: localmamba was built without CUDA (LOCALMAMBA_CUDA=OFF or no nvcc)";
#endif
}

// True for "cuda" when a device is usable; a clean RuntimeError ("no CUDA device ...") when not.
inline bool is_cuda_device(const std::string& device) {
  if (device == "cpu") return false;
  if (device == "cuda") {
#ifdef LOCALMAMBA_WITH_CUDA
    if (cuda::device_count() > 0) return true;
#endif
    throw std::runtime_error(cuda_status());
  }
  throw std::invalid_argument("device must be 'cpu' or 'cuda', got '" + device + "'");
}

}  // namespace bindings
}  // namespace localmamba
