// The one tolerance rule of the kernel tests, the same as the Python tests' assert_close
// (tests/python/test_selective_scan.py): an element passes when
//   |actual - expected| <= atol(dtype) * max|expected| + rtol(dtype) * |expected|
// where dtype is the type the compared values were computed / stored in.
#pragma once

#include "localmamba/dtype.h"

namespace localmamba {
namespace test_tolerance {

struct Tolerance {
  double rtol, atol;
};

inline Tolerance for_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return {1e-10, 1e-10};
    case DType::kFloat32: return {3e-4, 1e-3};
    case DType::kFloat16: return {3e-3, 5e-3};
    case DType::kBFloat16: return {2e-2, 3e-2};
    default: return {0.0, 0.0};
  }
}

}  // namespace test_tolerance
}  // namespace localmamba
