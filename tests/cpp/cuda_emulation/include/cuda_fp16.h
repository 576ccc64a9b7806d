// Host emulation of cuda_fp16.h: the storage type and the two conversions the kernels use, with
// the hardware's rounding (round to nearest even), from the CPU kernels' dtype.h.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

struct __half {
  uint16_t bits;
};

inline float __half2float(__half value) { return ::localmamba::half_to_float(value.bits); }
inline __half __float2half_rn(float value) { return __half{::localmamba::float_to_half(value)}; }
