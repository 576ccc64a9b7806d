#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/indexed_gather.h"
#include "localmamba/parallel.h"

namespace localmamba {

void check_indexed_gather_params(const IndexedGatherParams& p) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("indexed_gather: " + message);
  };
  require(p.batch >= 0 && p.num_directions >= 1 && p.channels >= 0 && p.out_length >= 0 && p.src_length >= 0,
          "sizes must be non-negative with at least one direction");
  const bool empty = p.batch == 0 || p.channels == 0 || p.out_length == 0;
  require(empty || (p.src != nullptr && p.dst != nullptr && p.index != nullptr), "null pointer");
  require(is_floating(p.dtype), std::string("unsupported dtype ") + dtype_name(p.dtype));
}

namespace {

// Moves raw elements of the same size: the copy never needs to know the numeric type.
template <typename Bits>
void gather_copy(const IndexedGatherParams& p) {
  const Bits* src = static_cast<const Bits*>(p.src);
  Bits* dst = static_cast<Bits*>(p.dst);
  const bool tokens_inner = std::llabs(p.src_stride_token) <= std::llabs(p.src_stride_channel) &&
                            std::llabs(p.dst_stride_token) <= std::llabs(p.dst_stride_channel);
  if (tokens_inner) {
    // One (b, k, c) row at a time: tokens of a row are contiguous on both sides.
    const int64_t rows = p.batch * p.num_directions * p.channels;
    parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t c = r % p.channels, k = (r / p.channels) % p.num_directions,
                      b = r / (p.channels * p.num_directions);
        const Bits* s = src + b * p.src_stride_batch + k * p.src_stride_direction + c * p.src_stride_channel;
        Bits* d = dst + b * p.dst_stride_batch + k * p.dst_stride_direction + c * p.dst_stride_channel;
        const int64_t* idx = p.index + k * p.out_length;
        for (int64_t i = 0; i < p.out_length; ++i) {
          const int64_t t = idx[i];
          d[i * p.dst_stride_token] = t >= 0 ? s[t * p.src_stride_token] : Bits{0};
        }
      }
    });
  } else {
    // Channels are contiguous on at least one side: a blocked (transposing) copy, so both
    // sides touch whole cache lines whichever axis each keeps contiguous.
    constexpr int64_t kTokenBlock = 16, kChannelBlock = 64;
    const int64_t token_blocks = (p.out_length + kTokenBlock - 1) / kTokenBlock;
    const int64_t rows = p.batch * p.num_directions * token_blocks;
    parallel_for(rows, 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i0 = (r % token_blocks) * kTokenBlock, k = (r / token_blocks) % p.num_directions,
                      b = r / (token_blocks * p.num_directions);
        const int64_t i1 = std::min(p.out_length, i0 + kTokenBlock);
        const int64_t* idx = p.index + k * p.out_length;
        const Bits* s = src + b * p.src_stride_batch + k * p.src_stride_direction;
        Bits* d = dst + b * p.dst_stride_batch + k * p.dst_stride_direction;
        for (int64_t c0 = 0; c0 < p.channels; c0 += kChannelBlock) {
          const int64_t c1 = std::min(p.channels, c0 + kChannelBlock);
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t t = idx[i];
            Bits* di = d + i * p.dst_stride_token;
            if (t < 0) {
              for (int64_t c = c0; c < c1; ++c) di[c * p.dst_stride_channel] = Bits{0};
            } else {
              const Bits* si = s + t * p.src_stride_token;
              for (int64_t c = c0; c < c1; ++c) di[c * p.dst_stride_channel] = si[c * p.src_stride_channel];
            }
          }
        }
      }
    });
  }
}

template <typename T>
void gather_sum(const IndexedGatherParams& p) {
  using Traits = ScalarTraits<T>;
  using Acc = typename Traits::compute;
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  const bool channels_inner = std::llabs(p.src_stride_channel) < std::llabs(p.src_stride_token);
  if (!channels_inner) {
    const int64_t rows = p.batch * p.channels;
    parallel_for(rows, 4, [&](int64_t begin, int64_t end) {
      std::vector<Acc> acc(static_cast<size_t>(p.out_length));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t c = r % p.channels, b = r / p.channels;
        std::fill(acc.begin(), acc.end(), Acc(0));
        for (int64_t k = 0; k < p.num_directions; ++k) {
          const T* s = src + b * p.src_stride_batch + k * p.src_stride_direction + c * p.src_stride_channel;
          const int64_t* idx = p.index + k * p.out_length;
          for (int64_t i = 0; i < p.out_length; ++i) {
            const int64_t t = idx[i];
            if (t >= 0) acc[static_cast<size_t>(i)] += Traits::load(s[t * p.src_stride_token]);
          }
        }
        T* d = dst + b * p.dst_stride_batch + c * p.dst_stride_channel;
        for (int64_t i = 0; i < p.out_length; ++i) d[i * p.dst_stride_token] = Traits::store(acc[static_cast<size_t>(i)]);
      }
    });
  } else {
    const int64_t rows = p.batch * p.out_length;
    parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      std::vector<Acc> acc(static_cast<size_t>(p.channels));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = r % p.out_length, b = r / p.out_length;
        std::fill(acc.begin(), acc.end(), Acc(0));
        for (int64_t k = 0; k < p.num_directions; ++k) {
          const int64_t t = p.index[k * p.out_length + i];
          if (t < 0) continue;
          const T* s = src + b * p.src_stride_batch + k * p.src_stride_direction + t * p.src_stride_token;
          for (int64_t c = 0; c < p.channels; ++c) acc[static_cast<size_t>(c)] += Traits::load(s[c * p.src_stride_channel]);
        }
        T* d = dst + b * p.dst_stride_batch + i * p.dst_stride_token;
        for (int64_t c = 0; c < p.channels; ++c) d[c * p.dst_stride_channel] = Traits::store(acc[static_cast<size_t>(c)]);
      }
    });
  }
}

}  // namespace

void indexed_gather_cpu(const IndexedGatherParams& p) {
  check_indexed_gather_params(p);
  if (p.batch == 0 || p.channels == 0 || p.out_length == 0) return;
  for (int64_t n = 0; n < p.num_directions * p.out_length; ++n) {
    if (p.index[n] < -1 || p.index[n] >= p.src_length) {
      throw std::invalid_argument("indexed_gather: index " + std::to_string(p.index[n]) +
                                  " out of range for source length " + std::to_string(p.src_length));
    }
  }
  if (p.sum_over_directions) {
    LOCALMAMBA_DISPATCH_FLOATING(p.dtype, "indexed_gather", T, [&] { gather_sum<T>(p); });
    return;
  }
  switch (element_size(p.dtype)) {
    case 2: gather_copy<uint16_t>(p); break;
    case 4: gather_copy<uint32_t>(p); break;
    case 8: gather_copy<uint64_t>(p); break;
    default: throw std::invalid_argument("indexed_gather: unsupported element size");
  }
}

}  // namespace localmamba
