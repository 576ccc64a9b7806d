// Shared by the CPU and CUDA gather tests: random inputs and a scalar reference.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "localmamba/indexed_gather.h"
#include "localmamba/scan_order.h"

namespace gather_test {

struct Case {
  int64_t batch, channels, height, width;
  std::vector<const char*> directions;
  bool channels_last;  // source/destination tokens as (B, L, C) instead of (B, C, L)
};

inline std::vector<localmamba::ScanDirection> parse(const Case& c) {
  std::vector<localmamba::ScanDirection> dirs;
  for (const char* name : c.directions) dirs.push_back(localmamba::parse_direction(name));
  return dirs;
}

inline std::vector<double> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-2.0, 2.0);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  for (auto& x : v)
    if (x == 0.0) x = 0.5;  // never zero: a zero would hide a missed copy
  return v;
}

// Scan: x spatial (B, C, L) or (B, L, C) -> y (B, K, C, Lmax) with zero padding.
inline std::vector<double> reference_scan(const Case& c, const std::vector<double>& x) {
  const auto dirs = parse(c);
  const auto maps = localmamba::build_scan_index_maps(dirs, c.height, c.width);
  const int64_t L = c.height * c.width, K = maps.num_directions, M = maps.max_length;
  std::vector<double> y(static_cast<size_t>(c.batch * K * c.channels * M), 0.0);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t ch = 0; ch < c.channels; ++ch)
        for (int64_t t = 0; t < M; ++t) {
          const int64_t p = maps.forward[static_cast<size_t>(k * M + t)];
          if (p < 0) continue;
          const int64_t src = c.channels_last ? (b * L + p) * c.channels + ch : (b * c.channels + ch) * L + p;
          y[static_cast<size_t>(((b * K + k) * c.channels + ch) * M + t)] = x[static_cast<size_t>(src)];
        }
  return y;
}

inline localmamba::IndexedGatherParams scan_params(const Case& c, const localmamba::ScanIndexMaps& maps) {
  localmamba::IndexedGatherParams p;
  const int64_t L = c.height * c.width;
  p.batch = c.batch;
  p.num_directions = maps.num_directions;
  p.channels = c.channels;
  p.out_length = maps.max_length;
  p.src_length = L;
  p.src_stride_batch = c.channels * L;
  p.src_stride_direction = 0;
  p.src_stride_channel = c.channels_last ? 1 : L;
  p.src_stride_token = c.channels_last ? c.channels : 1;
  p.dst_stride_batch = maps.num_directions * c.channels * maps.max_length;
  p.dst_stride_direction = c.channels * maps.max_length;
  p.dst_stride_channel = maps.max_length;
  p.dst_stride_token = 1;
  return p;
}

// Reverse summed over directions: y (B, K, C, Lmax) -> x (B, C, L) or (B, L, C).
inline localmamba::IndexedGatherParams reverse_sum_params(const Case& c, const localmamba::ScanIndexMaps& maps) {
  localmamba::IndexedGatherParams p;
  const int64_t L = c.height * c.width;
  p.batch = c.batch;
  p.num_directions = maps.num_directions;
  p.channels = c.channels;
  p.out_length = L;
  p.src_length = maps.max_length;
  p.src_stride_batch = maps.num_directions * c.channels * maps.max_length;
  p.src_stride_direction = c.channels * maps.max_length;
  p.src_stride_channel = maps.max_length;
  p.src_stride_token = 1;
  p.dst_stride_batch = c.channels * L;
  p.dst_stride_channel = c.channels_last ? 1 : L;
  p.dst_stride_token = c.channels_last ? c.channels : 1;
  p.sum_over_directions = true;
  return p;
}

inline std::vector<Case> cases() {
  return {
      {2, 3, 4, 4, {"w2"}, false},
      {2, 5, 7, 7, {"h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip"}, false},
      {1, 4, 5, 9, {"w7", "v_flip", "w3_col"}, true},
      {3, 2, 1, 1, {"h", "w2"}, false},
      {1, 3, 1, 17, {"v", "w2_flip"}, true},
      {2, 7, 9, 13, {"w7_flip", "h", "w2_col_flip", "w1"}, true},
  };
}

}  // namespace gather_test
