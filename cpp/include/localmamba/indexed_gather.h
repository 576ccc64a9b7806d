// Gather along the token axis through per-direction index maps. This one primitive is both
// "local scan" (spatial tokens -> K scanned sequences) and "local reverse" (K sequences ->
// spatial tokens, optionally summed over K): only the index table and strides differ.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

namespace localmamba {

// dst[b, k, c, i] = index[k, i] >= 0 ? src[b, k, c, index[k, i]] : 0
// or, with sum_over_directions, dst[b, c, i] = sum_k (same), accumulated in float
// (double for float64) in direction order, so the result is deterministic.
// All strides are in elements and may be zero (e.g. src_stride_direction = 0 when every
// direction reads the same source) or negative.
struct IndexedGatherParams {
  const void* src = nullptr;
  void* dst = nullptr;
  DType dtype = DType::kFloat32;

  int64_t batch = 0;
  int64_t num_directions = 0;
  int64_t channels = 0;
  int64_t out_length = 0;  // tokens per output row
  int64_t src_length = 0;  // tokens per source row; indices must lie in [-1, src_length)

  int64_t src_stride_batch = 0, src_stride_direction = 0, src_stride_channel = 0, src_stride_token = 0;
  int64_t dst_stride_batch = 0, dst_stride_direction = 0, dst_stride_channel = 0, dst_stride_token = 0;

  const int64_t* index = nullptr;  // contiguous (num_directions, out_length), -1 = zero padding
  bool sum_over_directions = false;

  void* cuda_stream = nullptr;  // cudaStream_t for the CUDA implementation; nullptr = default stream
};

// Validates sizes (throws std::invalid_argument); shared by the CPU and CUDA paths.
void check_indexed_gather_params(const IndexedGatherParams& params);

// Host implementation; index must be host memory. Multi-threaded over rows.
void indexed_gather_cpu(const IndexedGatherParams& params);

}  // namespace localmamba
