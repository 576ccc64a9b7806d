// The CUDA indexed gather (cuda/indexed_gather.cu, run by the host emulation) against the CPU
// gather: scan, reverse and reverse-summed, both token layouts, strided and negative-stride
// sources, all four dtypes. Destinations start as NaN, so every element must be written.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <random>
#include <string>

#include "emulation_test_support.h"
#include "gather_test_util.h"
#include "localmamba/indexed_gather.h"
#include "localmamba_cuda.h"

namespace localmamba {
namespace {

using emulation_test::Buffer;
using emulation_test::expect_close;
using emulation_test::poisoned_buffer;
using emulation_test::random_buffer;

enum class SourceLayout { kDense, kEveryOther, kReversedTokens };

// Runs `p` (src / dst set by this function) on the CPU and the emulated GPU and compares.
void expect_same_gather(IndexedGatherParams p, DType dtype, SourceLayout layout, int64_t src_elements,
                        int64_t dst_elements, const std::string& what) {
  std::mt19937 rng(77);
  const int64_t spread = layout == SourceLayout::kEveryOther ? 2 : 1;
  Buffer src = random_buffer(dtype, src_elements * spread, rng);
  p.dtype = dtype;
  p.src_stride_batch *= spread, p.src_stride_direction *= spread, p.src_stride_channel *= spread;
  p.src_stride_token *= spread;
  const char* base = static_cast<const char*>(src.data());
  if (layout == SourceLayout::kReversedTokens) {  // token t at (src_length - 1 - t): a negative stride
    base += (p.src_length - 1) * p.src_stride_token * element_size(dtype);
    p.src_stride_token = -p.src_stride_token;
  }
  p.src = base;
  Buffer cpu = poisoned_buffer(dtype, dst_elements), gpu = poisoned_buffer(dtype, dst_elements);
  p.dst = cpu.data();
  indexed_gather_cpu(p);
  p.dst = gpu.data();
  cuda::indexed_gather(p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  if (p.sum_over_directions) {
    expect_close(gpu, cpu, dtype, what);
  } else {  // a copy: bit-exact
    for (int64_t i = 0; i < dst_elements; ++i) {
      ASSERT_EQ(std::memcmp(static_cast<const char*>(gpu.data()) + i * element_size(dtype),
                            static_cast<const char*>(cpu.data()) + i * element_size(dtype), element_size(dtype)),
                0)
          << what << " element " << i;
    }
  }
}

class EmulatedGather : public testing::TestWithParam<DType> {};

TEST_P(EmulatedGather, ScanReverseAndSumMatchTheCpuGather) {
  const DType dtype = GetParam();
  for (const gather_test::Case& c : gather_test::cases()) {
    const auto maps = build_scan_index_maps(gather_test::parse(c), c.height, c.width);
    const int64_t L = c.height * c.width, K = maps.num_directions, M = maps.max_length;
    const std::string what = std::string(dtype_name(dtype)) + " " + std::to_string(c.height) + "x" +
                             std::to_string(c.width) + " K=" + std::to_string(K) +
                             (c.channels_last ? " channels-last" : "");
    for (SourceLayout layout : {SourceLayout::kDense, SourceLayout::kEveryOther, SourceLayout::kReversedTokens}) {
      IndexedGatherParams scan = gather_test::scan_params(c, maps);
      scan.index = maps.forward.data();
      expect_same_gather(scan, dtype, layout, c.batch * c.channels * L, c.batch * K * c.channels * M, what + " scan");
    }
    IndexedGatherParams reverse = gather_test::reverse_sum_params(c, maps);
    reverse.index = maps.inverse.data();
    expect_same_gather(reverse, dtype, SourceLayout::kDense, c.batch * K * c.channels * M, c.batch * c.channels * L,
                       what + " reverse-sum");
    reverse.sum_over_directions = false;  // per-direction reverse: (B, K, C, L)
    reverse.dst_stride_direction = c.channels * L;
    reverse.dst_stride_batch = K * c.channels * L;
    expect_same_gather(reverse, dtype, SourceLayout::kEveryOther, c.batch * K * c.channels * M,
                       c.batch * K * c.channels * L, what + " reverse");
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, EmulatedGather,
                         testing::Values(DType::kFloat64, DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                         [](const testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace localmamba
