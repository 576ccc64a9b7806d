// A non-owning view of a strided tensor: what kernels receive instead of framework objects.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

#include "localmamba/dtype.h"

namespace localmamba {

enum class DeviceType : int { kCPU = 0, kCUDA = 1 };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
};

constexpr int kMaxDims = 8;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device{};
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t strides[kMaxDims] = {0};  // in elements, may be negative or zero

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  int64_t stride(int dim) const { return strides[dim < 0 ? dim + ndim : dim]; }
  bool is_cuda() const { return device.type == DeviceType::kCUDA; }

  std::string shape_string() const {
    std::ostringstream os;
    os << "(";
    for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
    os << (ndim == 1 ? ",)" : ")");
    return os.str();
  }
};

// Builds a contiguous (row-major) view; convenient in tests and host code.
inline TensorView make_contiguous_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                       Device device = {}) {
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.ndim = static_cast<int>(shape.size());
  if (view.ndim > kMaxDims) throw std::invalid_argument("too many dimensions");
  int i = 0;
  for (int64_t s : shape) view.shape[i++] = s;
  int64_t stride = 1;
  for (int d = view.ndim - 1; d >= 0; --d) {
    view.strides[d] = stride;
    stride *= view.shape[d];
  }
  return view;
}

}  // namespace localmamba
