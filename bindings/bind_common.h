// Shared by the binding files. Each kernel's params struct is a Python class with named fields,
// built once per call from keywords (`_C.SelectiveScanParams(batch=..., u=TensorArg(...), ...)`).
// A strided tensor field takes a `TensorArg` (address, strides in elements, one per dimension) or
// None; its setter checks what protects memory (the number of strides, a unit stride where the
// kernel reads rows contiguously). Devices are named "cpu" / "cuda".
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/dtype.h"

#ifdef LOCALMAMBA_WITH_CUDA
#include "localmamba_cuda.h"
#endif

namespace localmamba {
namespace bindings {

// A strided tensor as the kernels see it: where it starts and how far apart its elements are.
struct TensorArg {
  uintptr_t ptr = 0;
  std::vector<int64_t> strides;  // in elements, one per dimension
};

// Binds a params struct as a Python class whose constructor takes its fields as keywords.
template <class S>
pybind11::class_<S> bind_params(pybind11::module_& m, const char* name, const char* doc) {
  pybind11::class_<S> cls(m, name, doc);
  cls.def(pybind11::init([](const pybind11::kwargs& fields) {
    pybind11::object obj = pybind11::cast(S{});
    for (const auto& field : fields) pybind11::setattr(obj, field.first, field.second);
    return obj.cast<S>();
  }));
  return cls;
}

// Field `name`: a TensorArg or None, stored as the pointer `ptr` and the stride fields `strides`
// (the argument's leading strides, in order). `unit_last`: the argument has one more dimension,
// whose stride must be 1 and is not stored (the kernels read those rows contiguously).
template <class S, class P>
void def_tensor(pybind11::class_<S>& cls, const char* op, const char* name, P S::*ptr,
                std::vector<int64_t S::*> strides, bool unit_last) {
  const std::string what = std::string(op) + ": " + name;
  const size_t rank = strides.size() + (unit_last ? 1 : 0);
  auto get = [ptr, strides, unit_last](const S& s) -> std::optional<TensorArg> {
    if (!(s.*ptr)) return std::nullopt;
    TensorArg arg{reinterpret_cast<uintptr_t>(s.*ptr), {}};
    for (auto field : strides) arg.strides.push_back(s.*field);
    if (unit_last) arg.strides.push_back(1);
    return arg;
  };
  auto set = [ptr, strides, unit_last, what, rank](S& s, const std::optional<TensorArg>& arg) {
    s.*ptr = nullptr;
    for (auto field : strides) s.*field = 0;
    if (!arg) return;
    if (arg->strides.size() != rank) {
      throw std::invalid_argument(what + " needs " + std::to_string(rank) + " strides, got " +
                                  std::to_string(arg->strides.size()));
    }
    if (unit_last && arg->strides.back() != 1) {
      throw std::invalid_argument(what + " must have stride 1 along its last dimension, got stride " +
                                  std::to_string(arg->strides.back()));
    }
    s.*ptr = reinterpret_cast<P>(arg->ptr);
    for (size_t i = 0; i < strides.size(); ++i) s.*strides[i] = arg->strides[i];
  };
  cls.def_property(name, get, set);
}

// Field `name`: a channels-last row set `rows` (ptr, stride_batch, stride_direction, stride_step,
// by_token) as a TensorArg with (batch, direction, step, inner) strides and unit inner stride, or
// None; plus the bool field `<name>_by_token`.
template <class S, class Rows>
void def_rows(pybind11::class_<S>& cls, const char* op, const std::string& name, Rows S::*rows) {
  using Ptr = decltype(Rows::ptr);
  const std::string what = std::string(op) + ": " + name;
  cls.def_property(
      name.c_str(),
      [rows](const S& s) -> std::optional<TensorArg> {
        const Rows& r = s.*rows;
        if (!r.ptr) return std::nullopt;
        return TensorArg{reinterpret_cast<uintptr_t>(r.ptr), {r.stride_batch, r.stride_direction, r.stride_step, 1}};
      },
      [rows, what](S& s, const std::optional<TensorArg>& arg) {
        Rows& r = s.*rows;
        r.ptr = nullptr, r.stride_batch = r.stride_direction = r.stride_step = 0;
        if (!arg) return;
        if (arg->strides.size() != 4)
          throw std::invalid_argument(what + " needs 4 strides, got " + std::to_string(arg->strides.size()));
        if (arg->strides[3] != 1) {
          throw std::invalid_argument(what + " must have stride 1 along its last dimension, got stride " +
                                      std::to_string(arg->strides[3]));
        }
        r.ptr = reinterpret_cast<Ptr>(arg->ptr);
        r.stride_batch = arg->strides[0], r.stride_direction = arg->strides[1], r.stride_step = arg->strides[2];
      });
  cls.def_property(
      (name + "_by_token").c_str(), [rows](const S& s) { return (s.*rows).by_token; },
      [rows](S& s, bool by_token) { (s.*rows).by_token = by_token; });
}

// Field `name`: a raw address (an int; 0 = none), e.g. a contiguous buffer or a CUDA stream.
template <class S, class P>
void def_address(pybind11::class_<S>& cls, const char* name, P S::*ptr) {
  cls.def_property(
      name, [ptr](const S& s) { return reinterpret_cast<uintptr_t>(s.*ptr); },
      [ptr](S& s, uintptr_t address) { s.*ptr = reinterpret_cast<P>(address); });
}

// Field `name`: an element type by name ("float32", "float16", "bfloat16", "float64", ...).
template <class S>
void def_dtype(pybind11::class_<S>& cls, const char* name, DType S::*field) {
  cls.def_property(
      name, [field](const S& s) { return std::string(dtype_name(s.*field)); },
      [field](S& s, const std::string& dtype) { s.*field = dtype_from_name(dtype); });
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

// Runs `on_cpu` or `on_cuda` for `device` without the GIL. Wrap a CUDA-only call in
// LOCALMAMBA_CUDA_CALL: without CUDA, is_cuda_device has already refused "cuda".
template <class OnCpu, class OnCuda>
void run_on_device(const std::string& device, OnCpu&& on_cpu, OnCuda&& on_cuda) {
  const bool cuda = is_cuda_device(device);
  pybind11::gil_scoped_release release;
  if (cuda) {
    on_cuda();
  } else {
    on_cpu();
  }
}

#ifdef LOCALMAMBA_WITH_CUDA
#define LOCALMAMBA_CUDA_CALL(call) call
#else
#define LOCALMAMBA_CUDA_CALL(call)
#endif

}  // namespace bindings
}  // namespace localmamba
