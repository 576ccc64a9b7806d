// Device building blocks shared by the CUDA scans (selective and directional): launch shape,
// element I/O in the state type, and the block-wide scan over the (decay, input) pair operator.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "localmamba/selective_scan.h"

namespace localmamba {
namespace cuda {
namespace scan_detail {

constexpr int kThreads = 128;
constexpr int kItems = 4;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = kThreads * kItems;  // == selective_scan_cuda_chunk_size()
constexpr int kMaxN = static_cast<int>(kSelectiveScanMaxDstate);
constexpr unsigned kFullMask = 0xffffffffu;
constexpr size_t kMaxStaticSharedBytes = 48 * 1024;  // per block, without opting in to more

template <typename T> struct Io;
template <> struct Io<float> {
  using S = float;
  __device__ static float load(float v) { return v; }
  __device__ static float store(float v) { return v; }
};
template <> struct Io<double> {
  using S = double;
  __device__ static double load(double v) { return v; }
  __device__ static double store(double v) { return v; }
};
template <> struct Io<__half> {
  using S = float;
  __device__ static float load(__half v) { return __half2float(v); }
  __device__ static __half store(float v) { return __float2half_rn(v); }
};
template <> struct Io<__nv_bfloat16> {
  using S = float;
  __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

__device__ __forceinline__ float exp_s(float x) { return exp2f(x * 1.4426950408889634f); }
__device__ __forceinline__ double exp_s(double x) { return exp(x); }
__device__ __forceinline__ float log1p_s(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_s(double x) { return log1p(x); }

template <typename S>
struct Pair {
  S a, b;
};

// first then second: h -> second.a * (first.a * h + first.b) + second.b
template <typename S>
__device__ __forceinline__ Pair<S> compose(const Pair<S>& first, const Pair<S>& second) {
  return {first.a * second.a, second.a * first.b + second.b};
}

// Block-wide exclusive scan in time order (kReverse: reverse time order, thread 0 last).
// Returns the composition of everything before this thread; `total` gets the whole block.
// `warp_totals` must not be reused until the next __syncthreads() after this call.
template <bool kReverse, typename S>
__device__ __forceinline__ Pair<S> block_exclusive_scan(Pair<S> p, Pair<S>* warp_totals, Pair<S>& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Pair<S> inc = p;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const S oa = kReverse ? __shfl_down_sync(kFullMask, inc.a, off) : __shfl_up_sync(kFullMask, inc.a, off);
    const S ob = kReverse ? __shfl_down_sync(kFullMask, inc.b, off) : __shfl_up_sync(kFullMask, inc.b, off);
    if (kReverse ? lane + off < 32 : lane >= off) inc = compose(Pair<S>{oa, ob}, inc);
  }
  const S ea = kReverse ? __shfl_down_sync(kFullMask, inc.a, 1) : __shfl_up_sync(kFullMask, inc.a, 1);
  const S eb = kReverse ? __shfl_down_sync(kFullMask, inc.b, 1) : __shfl_up_sync(kFullMask, inc.b, 1);
  const bool first_lane = kReverse ? lane == 31 : lane == 0;
  const Pair<S> excl = first_lane ? Pair<S>{S(1), S(0)} : Pair<S>{ea, eb};
  if (kReverse ? lane == 0 : lane == 31) warp_totals[warp] = inc;
  __syncthreads();
  Pair<S> prefix{S(1), S(0)};
  total = Pair<S>{S(1), S(0)};
#pragma unroll
  for (int k = 0; k < kWarps; ++k) {
    const int w = kReverse ? kWarps - 1 - k : k;
    if (w == warp) prefix = total;
    total = compose(total, warp_totals[w]);
  }
  return compose(prefix, excl);
}

template <typename S>
__device__ __forceinline__ S warp_sum(S v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(kFullMask, v, off);
  return v;
}

}  // namespace scan_detail
}  // namespace cuda
}  // namespace localmamba
