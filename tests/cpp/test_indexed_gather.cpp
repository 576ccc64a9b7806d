#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "gather_test_util.h"
#include "localmamba/dtype.h"
#include "localmamba/indexed_gather.h"

using namespace gather_test;
using localmamba::DType;

namespace {

template <typename T>
std::vector<T> convert(const std::vector<double>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = localmamba::ScalarTraits<T>::store(static_cast<typename localmamba::ScalarTraits<T>::compute>(v[i]));
  return out;
}

template <typename T>
std::vector<double> back(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<double>(localmamba::ScalarTraits<T>::load(v[i]));
  return out;
}

template <typename T>
void check_scan_then_reverse(DType dtype) {
  for (const Case& c : cases()) {
    const auto maps = localmamba::build_scan_index_maps(parse(c), c.height, c.width);
    const int64_t L = c.height * c.width;
    // Round the inputs through T so the reference sees exactly what the kernel sees.
    const std::vector<T> x = convert<T>(random_values(static_cast<size_t>(c.batch * c.channels * L), 7));
    const std::vector<double> x_exact = back(x);
    std::vector<T> y(static_cast<size_t>(c.batch * maps.num_directions * c.channels * maps.max_length));

    auto params = scan_params(c, maps);
    params.src = x.data();
    params.dst = y.data();
    params.dtype = dtype;
    params.index = maps.forward.data();
    localmamba::indexed_gather_cpu(params);
    EXPECT_EQ(back(y), reference_scan(c, x_exact)) << "scan, case " << c.height << "x" << c.width;

    // Reverse with a sum over directions: every real token is visited once per direction.
    std::vector<T> x_back(x.size());
    auto rparams = reverse_sum_params(c, maps);
    rparams.src = y.data();
    rparams.dst = x_back.data();
    rparams.dtype = dtype;
    rparams.index = maps.inverse.data();
    localmamba::indexed_gather_cpu(rparams);
    const auto got = back(x_back);
    for (size_t i = 0; i < got.size(); ++i) {
      // The kernel adds in the compute type, direction by direction.
      typename localmamba::ScalarTraits<T>::compute acc = 0;
      for (int64_t d = 0; d < maps.num_directions; ++d) acc += static_cast<decltype(acc)>(x_exact[i]);
      const double expected = static_cast<double>(localmamba::ScalarTraits<T>::load(localmamba::ScalarTraits<T>::store(acc)));
      ASSERT_EQ(got[i], expected) << "reverse-sum element " << i;
    }
  }
}

}  // namespace

TEST(IndexedGatherCpu, ScanAndReverseFloat32) { check_scan_then_reverse<float>(DType::kFloat32); }
TEST(IndexedGatherCpu, ScanAndReverseFloat64) { check_scan_then_reverse<double>(DType::kFloat64); }
TEST(IndexedGatherCpu, ScanAndReverseFloat16) { check_scan_then_reverse<localmamba::Half>(DType::kFloat16); }
TEST(IndexedGatherCpu, ScanAndReverseBFloat16) { check_scan_then_reverse<localmamba::BFloat16>(DType::kBFloat16); }

TEST(IndexedGatherCpu, PerDirectionReverseIsExactInverse) {
  Case c{2, 3, 5, 9, {"w2", "v", "w7_flip"}, false};
  const auto maps = localmamba::build_scan_index_maps(parse(c), c.height, c.width);
  const int64_t L = c.height * c.width, K = maps.num_directions, M = maps.max_length;
  const auto x = random_values(static_cast<size_t>(c.batch * c.channels * L), 11);
  const auto y = reference_scan(c, x);
  std::vector<double> out(static_cast<size_t>(c.batch * K * c.channels * L), 0.0);
  localmamba::IndexedGatherParams p;
  p.src = y.data();
  p.dst = out.data();
  p.dtype = DType::kFloat64;
  p.batch = c.batch;
  p.num_directions = K;
  p.channels = c.channels;
  p.out_length = L;
  p.src_length = M;
  p.src_stride_batch = K * c.channels * M;
  p.src_stride_direction = c.channels * M;
  p.src_stride_channel = M;
  p.src_stride_token = 1;
  p.dst_stride_batch = K * c.channels * L;
  p.dst_stride_direction = c.channels * L;
  p.dst_stride_channel = L;
  p.dst_stride_token = 1;
  p.index = maps.inverse.data();
  localmamba::indexed_gather_cpu(p);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < c.channels * L; ++i)
        ASSERT_EQ(out[static_cast<size_t>((b * K + k) * c.channels * L + i)], x[static_cast<size_t>(b * c.channels * L + i)]);
}

TEST(IndexedGatherCpu, RejectsOutOfRangeIndexAndBadSizes) {
  std::vector<float> src(4, 1.0f), dst(4);
  std::vector<int64_t> index{0, 1, 7, -1};
  localmamba::IndexedGatherParams p;
  p.src = src.data();
  p.dst = dst.data();
  p.index = index.data();
  p.batch = 1;
  p.num_directions = 1;
  p.channels = 1;
  p.out_length = 4;
  p.src_length = 4;
  p.src_stride_token = 1;
  p.dst_stride_token = 1;
  EXPECT_THROW(localmamba::indexed_gather_cpu(p), std::invalid_argument);
  index[2] = 2;
  p.num_directions = 0;
  EXPECT_THROW(localmamba::indexed_gather_cpu(p), std::invalid_argument);
  p.num_directions = 1;
  p.dtype = DType::kInt64;
  EXPECT_THROW(localmamba::indexed_gather_cpu(p), std::invalid_argument);
  p.dtype = DType::kFloat32;
  localmamba::indexed_gather_cpu(p);
  EXPECT_EQ(dst, (std::vector<float>{1, 1, 1, 0}));
}

TEST(HalfConversion, RoundTripsAndRoundsToNearestEven) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f}) {
    EXPECT_EQ(localmamba::half_to_float(localmamba::float_to_half(f)), f) << f;
  }
  EXPECT_EQ(localmamba::float_to_half(1.0f + 1.0f / 2048.0f), localmamba::float_to_half(1.0f));  // tie to even
  EXPECT_TRUE(std::isinf(localmamba::half_to_float(localmamba::float_to_half(1e6f))));
  EXPECT_EQ(localmamba::bfloat16_to_float(localmamba::float_to_bfloat16(1.5f)), 1.5f);
  EXPECT_EQ(localmamba::float_to_bfloat16(1.0f + 1.0f / 256.0f), localmamba::float_to_bfloat16(1.0f));  // tie to even
}
