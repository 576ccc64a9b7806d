// Error helpers shared by the .cu files.
#pragma once

#include <cuda_runtime.h>

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

inline void check_launch(const char* kernel_name) { throw_on_cuda_error(cudaGetLastError(), kernel_name); }

}  // namespace cuda
}  // namespace localmamba
