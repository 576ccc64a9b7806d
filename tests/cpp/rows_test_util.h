// Shared by the tests of the channels-last row kernels (mixer_infer, scan_conv_train): random
// inputs and the one comparison rule of those tests.
// Tolerance: float64 agrees to 1e-10 (relative to max|ref|); float32 to 1e-3 * max|ref| + 3e-4 |ref|.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace rows_test {

inline std::vector<double> randn(size_t n, std::mt19937& g, double scale = 1.0, double shift = 0.0) {
  std::normal_distribution<double> d;
  std::vector<double> v(n);
  for (auto& x : v) x = shift + scale * d(g);
  return v;
}

template <typename S>
std::vector<S> cast(const std::vector<double>& v) {
  return std::vector<S>(v.begin(), v.end());
}

template <typename S>
void expect_close(const std::vector<S>& actual, const std::vector<double>& expected, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  const bool f64 = sizeof(S) == 8;
  double max_ref = 1e-30;
  for (double e : expected) max_ref = std::max(max_ref, std::fabs(e));
  for (size_t i = 0; i < expected.size(); ++i) {
    const double bound = f64 ? 1e-10 * max_ref : 1e-3 * max_ref + 3e-4 * std::fabs(expected[i]);
    ASSERT_LE(std::fabs(static_cast<double>(actual[i]) - expected[i]), bound) << what << " at " << i;
  }
}

}  // namespace rows_test
