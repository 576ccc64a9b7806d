// Buffers for the emulated-CUDA tests: typed host memory standing in for device memory, random
// (never zero) inputs, NaN-poisoned outputs and workspaces, and the comparison under tolerance.h.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "localmamba/dtype.h"
#include "tolerance.h"

namespace localmamba {
namespace emulation_test {

// `numel` elements of `dtype`, 8-byte aligned (as a device allocation would be at least).
class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, int64_t numel) : dtype_(dtype), numel_(numel), words_((numel * element_size(dtype) + 7) / 8 + 1) {}

  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  void* data() { return words_.data(); }
  const void* data() const { return words_.data(); }
  int64_t bytes() const { return numel_ * element_size(dtype_); }

  // All bits set: NaN in every floating type, so a read of an element never written shows up.
  void poison() { std::memset(words_.data(), 0xff, words_.size() * 8); }

  double get(int64_t i) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(words_.data());
    switch (dtype_) {
      case DType::kFloat64: { double v; std::memcpy(&v, p + 8 * i, 8); return v; }
      case DType::kFloat32: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
      case DType::kFloat16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return half_to_float(v); }
      case DType::kBFloat16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return bfloat16_to_float(v); }
      default: ADD_FAILURE() << "unsupported dtype"; return 0;
    }
  }

  void set(int64_t i, double value) {
    unsigned char* p = reinterpret_cast<unsigned char*>(words_.data());
    switch (dtype_) {
      case DType::kFloat64: std::memcpy(p + 8 * i, &value, 8); break;
      case DType::kFloat32: { const float v = float(value); std::memcpy(p + 4 * i, &v, 4); break; }
      case DType::kFloat16: { const uint16_t v = float_to_half(float(value)); std::memcpy(p + 2 * i, &v, 2); break; }
      case DType::kBFloat16: {
        const uint16_t v = float_to_bfloat16(float(value));
        std::memcpy(p + 2 * i, &v, 2);
        break;
      }
      default: ADD_FAILURE() << "unsupported dtype";
    }
  }

 private:
  DType dtype_ = DType::kFloat32;
  int64_t numel_ = 0;
  std::vector<uint64_t> words_;
};

// Uniform in shift + scale * [-1, 1], never exactly zero (a zero would hide a missed term).
inline Buffer random_buffer(DType dtype, int64_t numel, std::mt19937& rng, double scale = 1.0, double shift = 0.0) {
  Buffer b(dtype, numel);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (int64_t i = 0; i < numel; ++i) {
    double v = shift + scale * dist(rng);
    if (v == 0.0) v = 0.25 * scale;
    b.set(i, v);
  }
  return b;
}

inline Buffer poisoned_buffer(DType dtype, int64_t numel) {
  Buffer b(dtype, numel);
  b.poison();
  return b;
}

// Compares the elements at `offsets` (all of them when empty) under the tolerance of `dtype`.
inline void expect_close(const Buffer& actual, const Buffer& expected, DType dtype, const std::string& what,
                         const std::vector<int64_t>& offsets = {}) {
  ASSERT_EQ(actual.numel(), expected.numel()) << what;
  const auto tol = test_tolerance::for_dtype(dtype);
  std::vector<int64_t> at = offsets;
  if (at.empty()) {
    at.resize(expected.numel());
    for (int64_t i = 0; i < expected.numel(); ++i) at[i] = i;
  }
  double scale = 0;
  for (int64_t i : at) scale = std::max(scale, std::fabs(expected.get(i)));
  scale = std::max(scale, 1e-30);
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i : at) {
    const double a = actual.get(i), e = expected.get(i), err = std::fabs(a - e);
    if (!(err <= tol.atol * scale + tol.rtol * std::fabs(e))) {  // NaN fails too
      if (first < 0) first = i;
      ++bad;
    }
    if (err > worst || std::isnan(err)) worst = err;
  }
  EXPECT_EQ(bad, 0) << what << " (" << dtype_name(dtype) << "): " << bad << "/" << at.size()
                    << " elements out of tolerance, first at " << first << " (actual "
                    << (first >= 0 ? actual.get(first) : 0) << ", expected " << (first >= 0 ? expected.get(first) : 0)
                    << "), max err " << worst << ", max|expected| " << scale;
}

}  // namespace emulation_test
}  // namespace localmamba
