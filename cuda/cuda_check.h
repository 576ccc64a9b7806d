// Error helpers shared by the .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace localmamba {
namespace cuda {

inline void throw_on_cuda_error(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    throw std::runtime_error(std::string("no CUDA device (") + what + ": " + cudaGetErrorString(status) + ")");
  }
  throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// The caller-provided scratch memory (the kernels never allocate): `needed` bytes, 8-aligned.
inline void check_workspace(const void* workspace, int64_t bytes, int64_t needed, const char* what) {
  if (needed == 0) return;
  if (!workspace || bytes < needed || reinterpret_cast<uintptr_t>(workspace) % 8 != 0) {
    throw std::invalid_argument(std::string(what) + ": workspace must be " + std::to_string(needed) +
                                " bytes of 8-aligned device memory, got " + std::to_string(bytes) +
                                (workspace ? " bytes" : " bytes at a null pointer"));
  }
}

inline void check_launch(const char* kernel_name) { throw_on_cuda_error(cudaGetLastError(), kernel_name); }

}  // namespace cuda
}  // namespace localmamba
