// Host emulation of the CUDA runtime subset that localmamba's cuda/*.cu sources use. Compiling a
// .cu file as C++ with this folder first on the include path runs its kernels on CPU threads:
// one block at a time, one (persistent) host thread per CUDA thread, __shared__ = a function-local
// static (valid because one block runs at a time), __syncthreads and warp shuffles as checked
// barriers. See README.md for what this can and cannot verify.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define LOCALMAMBA_CUDA_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
};

namespace localmamba {
namespace cuda_emulation {

// Position of the calling emulated thread; set by the worker that runs it.
struct ThreadCoords {
  uint3 thread{0, 0, 0}, block{0, 0, 0};
  dim3 block_dim, grid_dim;
};
inline thread_local ThreadCoords current;

// Runs `body` once per thread of every block of the grid (blocks one after another) after the
// launch-limit checks; a violated limit is recorded for cudaGetLastError, as a real launch does.
void run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t dynamic_shared_bytes,
              const std::function<void()>& body);

// Block barrier (__syncthreads) and warp exchange (shuffles) of the calling thread's block. Both
// abort the process with a message on divergence (threads at different call sites, a thread that
// already returned) and on deadlock (the barrier not complete within the watchdog time).
void sync_threads(const char* file, int line);
uint64_t warp_exchange(unsigned mask, uint64_t bits, int source_offset, const char* what, const char* file,
                       int line);

void record_error(cudaError_t error);
cudaError_t take_error();

// Launches per kernel name since the start of the process (tests check that a path really ran).
long long launch_count(const char* kernel_name);

// Seconds a barrier may wait before the watchdog declares a deadlock (LOCALMAMBA_EMULATION_WATCHDOG_S).
double watchdog_seconds();

// The launch that LOCALMAMBA_LAUNCH expands to: arguments are converted to the kernel's parameter
// types once, as a real launch does, and every emulated thread calls the kernel with its own copy.
template <typename... Params, typename... Args>
void launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  run_grid(kernel_name, grid, block, shared_bytes, [&] { std::apply(kernel, params); });
}

template <typename T>
T shuffle(unsigned mask, T value, int source_offset, const char* what, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of an unsupported type");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = warp_exchange(mask, bits, source_offset, what, file, line);
  T result;
  std::memcpy(&result, &bits, sizeof(T));
  return result;
}

// atomicAdd on float / double: a compare-and-swap loop (what the hardware does atomically).
template <typename T>
T atomic_add(T* address, T value) {
  T old;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  T desired;
  do {
    desired = old + value;
  } while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}

}  // namespace cuda_emulation
}  // namespace localmamba

#define threadIdx (::localmamba::cuda_emulation::current.thread)
#define blockIdx (::localmamba::cuda_emulation::current.block)
#define blockDim (::localmamba::cuda_emulation::current.block_dim)
#define gridDim (::localmamba::cuda_emulation::current.grid_dim)
#define __syncthreads() ::localmamba::cuda_emulation::sync_threads(__FILE__, __LINE__)
#define __shfl_up_sync(mask, value, delta) \
  ::localmamba::cuda_emulation::shuffle(mask, value, -static_cast<int>(delta), "__shfl_up_sync", __FILE__, __LINE__)
#define __shfl_down_sync(mask, value, delta) \
  ::localmamba::cuda_emulation::shuffle(mask, value, static_cast<int>(delta), "__shfl_down_sync", __FILE__, __LINE__)

template <typename T>
inline T atomicAdd(T* address, T value) {
  return ::localmamba::cuda_emulation::atomic_add(address, value);
}

inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return ::localmamba::cuda_emulation::take_error(); }
inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated launch limits)";
    case cudaErrorInvalidValue: return "invalid argument";
    default: return "emulated CUDA error";
  }
}
inline cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 0;  // no runtime: the host emulation
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t) {
  if (bytes > 0 && pointer == nullptr) return cudaErrorInvalidValue;
  if (bytes > 0) std::memset(pointer, value, bytes);
  return cudaSuccess;
}
