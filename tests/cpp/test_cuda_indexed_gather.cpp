// CUDA gather against the CPU reference. Skips cleanly where no device (or driver) exists.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "gather_test_util.h"
#include "localmamba_cuda.h"

using namespace gather_test;

namespace {

template <typename T>
T* to_device(const std::vector<T>& host) {
  T* ptr = nullptr;
  EXPECT_EQ(cudaMalloc(&ptr, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return ptr;
}

}  // namespace

TEST(IndexedGatherCuda, ReportsNoDeviceCleanly) {
  const int count = localmamba::cuda::device_count();
  if (count == 0) {
    EXPECT_NE(localmamba::cuda::device_status().find("no CUDA device"), std::string::npos);
  } else {
    EXPECT_GT(count, 0);
  }
}

TEST(IndexedGatherCuda, ScanAndReverseMatchCpu) {
  if (localmamba::cuda::device_count() == 0) GTEST_SKIP() << localmamba::cuda::device_status();
  for (const Case& c : cases()) {
    const auto maps = localmamba::build_scan_index_maps(parse(c), c.height, c.width);
    const int64_t L = c.height * c.width;
    const std::vector<double> x = random_values(static_cast<size_t>(c.batch * c.channels * L), 3);
    const std::vector<double> expected = reference_scan(c, x);
    double* dx = to_device(x);
    double* dy = to_device(std::vector<double>(expected.size(), 123.0));
    int64_t* dforward = to_device(maps.forward);
    int64_t* dinverse = to_device(maps.inverse);
    auto p = scan_params(c, maps);
    p.src = dx;
    p.dst = dy;
    p.dtype = localmamba::DType::kFloat64;
    p.index = dforward;
    localmamba::cuda::indexed_gather(p);
    std::vector<double> y(expected.size());
    ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * sizeof(double), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(y, expected);

    auto r = reverse_sum_params(c, maps);
    r.src = dy;
    r.dst = dx;
    r.dtype = localmamba::DType::kFloat64;
    r.index = dinverse;
    localmamba::cuda::indexed_gather(r);
    std::vector<double> back(x.size());
    ASSERT_EQ(cudaMemcpy(back.data(), dx, back.size() * sizeof(double), cudaMemcpyDeviceToHost), cudaSuccess);
    const double k = static_cast<double>(maps.num_directions);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(back[i], x[i] * k, 1e-12 * k * 2.0);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dforward);
    cudaFree(dinverse);
  }
}
