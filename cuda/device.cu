#include <cuda_runtime.h>

#include "cuda_check.h"
#include "localmamba_cuda.h"

#ifndef LOCALMAMBA_CUDA_ARCHITECTURES
#define LOCALMAMBA_CUDA_ARCHITECTURES "unknown"
#endif

namespace localmamba {
namespace cuda {

int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls see a clean state
    return 0;
  }
  return count;
}

std::string device_status() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device: none found";
  return std::to_string(count) + " CUDA device(s)";
}

std::string compiled_architectures() { return LOCALMAMBA_CUDA_ARCHITECTURES; }

int runtime_version() {
  int version = 0;
  cudaRuntimeGetVersion(&version);
  return version;
}

}  // namespace cuda
}  // namespace localmamba
