// The emulator itself: shuffle semantics, launch-limit checks, and the aborts (with a message,
// within seconds) on divergent barriers, deadlocks, partial-mask shuffles and inactive lanes.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdlib>
#include <vector>

#include "launch.cuh"

namespace localmamba {
namespace {

__global__ void shuffle_kernel(int* up, int* down) {
  const int t = static_cast<int>(threadIdx.x);
  up[t] = __shfl_up_sync(0xffffffffu, t * 10, 3u);
  down[t] = __shfl_down_sync(0xffffffffu, t * 10, 5u);
}

TEST(Emulator, ShufflesReadTheSourceLaneOrKeepTheirOwnValue) {
  std::vector<int> up(64, -1), down(64, -1);
  LOCALMAMBA_LAUNCH(shuffle_kernel, 1, 64, 0, nullptr, up.data(), down.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    EXPECT_EQ(up[t], (lane >= 3 ? t - 3 : t) * 10) << t;
    EXPECT_EQ(down[t], (lane + 5 < 32 ? t + 5 : t) * 10) << t;
  }
}

__global__ void block_sum_kernel(const float* in, float* out) {
  __shared__ float partial[8];
  const unsigned t = threadIdx.x + blockIdx.x * blockDim.x;
  float v = in[t];
  for (unsigned off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) s += partial[w];
    out[blockIdx.x] = s;
  }
}

TEST(Emulator, BarriersAndSharedMemoryGiveEveryBlockItsOwnSum) {
  std::vector<float> in(3 * 256), out(3, -1.0f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7) + 0.5f;
  LOCALMAMBA_LAUNCH(block_sum_kernel, 3, 256, 0, nullptr, in.data(), out.data());
  for (int b = 0; b < 3; ++b) {
    float expected = 0;
    for (int i = 0; i < 256; ++i) expected += in[b * 256 + i];
    EXPECT_FLOAT_EQ(out[b], expected);
  }
}

__global__ void count_kernel(int* counter) { atomicAdd(reinterpret_cast<float*>(counter), 1.0f); }

TEST(Emulator, LaunchLimitsAreReportedAsACudaErrorAndNothingRuns) {
  float counter = 0;
  int* p = reinterpret_cast<int*>(&counter);
  const long long before = cuda_emulation::launch_count("count_kernel");
  LOCALMAMBA_LAUNCH(count_kernel, 1, 1025, 0, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LOCALMAMBA_LAUNCH(count_kernel, dim3(1, 65536), 32, 0, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LOCALMAMBA_LAUNCH(count_kernel, dim3(1, 1, 65536), 32, 0, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LOCALMAMBA_LAUNCH(count_kernel, dim3(1, 0), 32, 0, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LOCALMAMBA_LAUNCH(count_kernel, 1, 32, 48 * 1024 + 1, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cuda_emulation::launch_count("count_kernel"), before);
  EXPECT_EQ(counter, 0.0f);
  LOCALMAMBA_LAUNCH(count_kernel, dim3(2, 3), dim3(32, 2), 48 * 1024, nullptr, p);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(counter, 2 * 3 * 64.0f);
}

__global__ void divergent_sync_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();  // half the block skips the barrier
  out[threadIdx.x] = 1;
}

__global__ void two_barriers_kernel(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void deadlock_kernel(int* out) {
  // Half a warp shuffles while the other half waits at __syncthreads: neither can ever complete.
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1u);
  }
  __syncthreads();
}

__global__ void partial_mask_kernel(int* out) { out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 1, 1u); }

__global__ void inactive_lanes_kernel(int* out) { out[threadIdx.x] = __shfl_up_sync(0xffffffffu, 1, 1u); }

class EmulatorDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  std::vector<int> out = std::vector<int>(64, 0);
};

TEST_F(EmulatorDeathTest, ThreadsSkippingABarrierAbortWithAMessage) {
  EXPECT_DEATH(LOCALMAMBA_LAUNCH(divergent_sync_kernel, 1, 32, 0, nullptr, out.data()),
               "divergent_sync_kernel block \\(0,0,0\\).*(returned from the kernel|already returned)");
}

TEST_F(EmulatorDeathTest, ThreadsAtDifferentBarriersAbortWithAMessage) {
  EXPECT_DEATH(LOCALMAMBA_LAUNCH(two_barriers_kernel, 1, 32, 0, nullptr, out.data()),
               "divergent __syncthreads: thread [0-9]+ at test_emulator.cpp");
}

TEST_F(EmulatorDeathTest, DeadlockFailsWithinTheWatchdogTime) {
  setenv("LOCALMAMBA_EMULATION_WATCHDOG_S", "1", 1);
  EXPECT_DEATH(LOCALMAMBA_LAUNCH(deadlock_kernel, 1, 32, 0, nullptr, out.data()), "deadlock: only [0-9]+ of");
}

TEST_F(EmulatorDeathTest, PartialMaskShuffleAborts) {
  EXPECT_DEATH(LOCALMAMBA_LAUNCH(partial_mask_kernel, 1, 32, 0, nullptr, out.data()), "partial mask 0x0000ffff");
}

TEST_F(EmulatorDeathTest, FullMaskShuffleInAPartialWarpAborts) {
  EXPECT_DEATH(LOCALMAMBA_LAUNCH(inactive_lanes_kernel, 1, 40, 0, nullptr, out.data()), "inactive lanes");
}

}  // namespace
}  // namespace localmamba
