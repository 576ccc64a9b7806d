// Every kernel launch in cuda/ goes through LOCALMAMBA_LAUNCH, so the same sources run on a GPU
// (nvcc: a real <<<grid, block, shared_bytes, stream>>> launch) and under the host emulation of
// tests/cpp/cuda_emulation (its cuda_runtime.h defines LOCALMAMBA_CUDA_EMULATION and runs the grid
// on CPU threads). Launch errors are reported by cudaGetLastError() in both cases (check_launch).
#pragma once

#include <cuda_runtime.h>

#ifdef LOCALMAMBA_CUDA_EMULATION
#define LOCALMAMBA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  ::localmamba::cuda_emulation::launch(#kernel, kernel, grid, block, shared_bytes, stream, __VA_ARGS__)
#else
#define LOCALMAMBA_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  kernel<<<grid, block, shared_bytes, stream>>>(__VA_ARGS__)
#endif
