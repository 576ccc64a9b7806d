// A kernel with a planted shared-memory race (a missing __syncthreads between a write and the
// reads of other threads), built only in the ThreadSanitizer build: its ctest passes only when
// TSan reports the race, so the sanitizer check of the real kernels cannot silently stop working.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "launch.cuh"

namespace {

__global__ void planted_race_kernel(float* out) {
  __shared__ float value[4];
  if (threadIdx.x == 0) value[0] = 1.0f + static_cast<float>(blockIdx.x);
  // missing: __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = value[0];
}

}  // namespace

int main() {
  std::vector<float> out(2 * 64);
  LOCALMAMBA_LAUNCH(planted_race_kernel, 2, 64, 0, nullptr, out.data());
  std::printf("planted race ran: cuda error %d\n", static_cast<int>(cudaGetLastError()));
  return 0;
}
