#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "cuda_check.h"
#include "launch.cuh"
#include "localmamba_cuda.h"
#include "scan_primitives.cuh"

namespace localmamba {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Output elements are enumerated with the source's fastest axis innermost, so neighbouring
// threads read neighbouring source addresses (coalesced) in both layouts.
struct GatherShape {
  int64_t batch, directions, channels, length;
  bool channels_inner;
};

__device__ inline void split_index(int64_t linear, const GatherShape& s, int64_t directions, int64_t& b,
                                   int64_t& k, int64_t& c, int64_t& i) {
  if (s.channels_inner) {
    c = linear % s.channels;
    linear /= s.channels;
    i = linear % s.length;
    linear /= s.length;
  } else {
    i = linear % s.length;
    linear /= s.length;
    c = linear % s.channels;
    linear /= s.channels;
  }
  k = linear % directions;
  b = linear / directions;
}

template <typename Bits>
__global__ void gather_copy_kernel(IndexedGatherParams p, GatherShape s, int64_t total) {
  const Bits* src = static_cast<const Bits*>(p.src);
  Bits* dst = static_cast<Bits*>(p.dst);
  for (int64_t linear = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; linear < total;
       linear += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t b, k, c, i;
    split_index(linear, s, s.directions, b, k, c, i);
    const int64_t t = p.index[k * p.out_length + i];
    Bits value{};
    if (t >= 0) {
      value = src[b * p.src_stride_batch + k * p.src_stride_direction + c * p.src_stride_channel +
                  t * p.src_stride_token];
    }
    dst[b * p.dst_stride_batch + k * p.dst_stride_direction + c * p.dst_stride_channel + i * p.dst_stride_token] =
        value;
  }
}

template <typename T>
__global__ void gather_sum_kernel(IndexedGatherParams p, GatherShape s, int64_t total) {
  using Scalar = scan_detail::Io<T>;
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  for (int64_t linear = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; linear < total;
       linear += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t b, k_unused, c, i;
    split_index(linear, s, 1, b, k_unused, c, i);
    typename Scalar::S acc = 0;
    for (int64_t k = 0; k < p.num_directions; ++k) {
      const int64_t t = p.index[k * p.out_length + i];
      if (t >= 0) {
        acc += Scalar::load(src[b * p.src_stride_batch + k * p.src_stride_direction + c * p.src_stride_channel +
                                t * p.src_stride_token]);
      }
    }
    dst[b * p.dst_stride_batch + c * p.dst_stride_channel + i * p.dst_stride_token] = Scalar::store(acc);
  }
}

int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

void indexed_gather(const IndexedGatherParams& p) {
  check_indexed_gather_params(p);
  if (p.batch == 0 || p.channels == 0 || p.out_length == 0) return;
  if (device_count() == 0) throw std::runtime_error(device_status());
  GatherShape shape{p.batch, p.num_directions, p.channels, p.out_length,
                    (p.src_stride_channel < 0 ? -p.src_stride_channel : p.src_stride_channel) <
                        (p.src_stride_token < 0 ? -p.src_stride_token : p.src_stride_token)};
  cudaStream_t stream = static_cast<cudaStream_t>(p.cuda_stream);
  if (p.sum_over_directions) {
    const int64_t total = p.batch * p.channels * p.out_length;
    const unsigned blocks = grid_for(total);
    switch (p.dtype) {
      case DType::kFloat32:
        LOCALMAMBA_LAUNCH(gather_sum_kernel<float>, blocks, kThreads, 0, stream, p, shape, total);
        break;
      case DType::kFloat64:
        LOCALMAMBA_LAUNCH(gather_sum_kernel<double>, blocks, kThreads, 0, stream, p, shape, total);
        break;
      case DType::kFloat16:
        LOCALMAMBA_LAUNCH(gather_sum_kernel<__half>, blocks, kThreads, 0, stream, p, shape, total);
        break;
      case DType::kBFloat16:
        LOCALMAMBA_LAUNCH(gather_sum_kernel<__nv_bfloat16>, blocks, kThreads, 0, stream, p, shape, total);
        break;
      default: throw std::invalid_argument("indexed_gather: unsupported dtype");
    }
  } else {
    const int64_t total = p.batch * p.num_directions * p.channels * p.out_length;
    const unsigned blocks = grid_for(total);
    switch (element_size(p.dtype)) {
      case 2: LOCALMAMBA_LAUNCH(gather_copy_kernel<uint16_t>, blocks, kThreads, 0, stream, p, shape, total); break;
      case 4: LOCALMAMBA_LAUNCH(gather_copy_kernel<uint32_t>, blocks, kThreads, 0, stream, p, shape, total); break;
      case 8: LOCALMAMBA_LAUNCH(gather_copy_kernel<uint64_t>, blocks, kThreads, 0, stream, p, shape, total); break;
      default: throw std::invalid_argument("indexed_gather: unsupported element size");
    }
  }
  check_launch("indexed_gather kernel");
}

}  // namespace cuda
}  // namespace localmamba
