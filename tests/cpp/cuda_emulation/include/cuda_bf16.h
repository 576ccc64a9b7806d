// Host emulation of cuda_bf16.h: the storage type and the two conversions the kernels use, with
// the hardware's rounding (round to nearest even), from the CPU kernels' dtype.h.
#pragma once

#include <cstdint>

#include "localmamba/dtype.h"

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 value) { return ::localmamba::bfloat16_to_float(value.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float value) { return __nv_bfloat16{::localmamba::float_to_bfloat16(value)}; }
