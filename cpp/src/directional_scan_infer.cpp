// Argument validation and the CPU entry point of the forward-only channels-last directional
// scan, dispatched to the SIMD level the selective scan picked.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/directional_scan.h"
#include "localmamba/directional_scan_infer.h"
#include "localmamba/selective_scan.h"
#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument("directional_scan_infer: " + message);
}

std::string str(int64_t v) { return std::to_string(v); }

void check_index(const DirectionalScanInferParams& p) {
  std::vector<char> seen(static_cast<size_t>(p.num_tokens));
  for (int64_t k = 0; k < p.num_directions; ++k) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t t = 0; t < p.length; ++t) {
      const int64_t v = p.index[k * p.length + t];
      if (v < -1 || v >= p.num_tokens)
        fail("index[" + str(k) + ", " + str(t) + "] = " + str(v) + " is outside [-1, " + str(p.num_tokens) + ")");
      if (v >= 0 && seen[static_cast<size_t>(v)]++)
        fail("direction " + str(k) + " visits token " + str(v) + " more than once");
    }
  }
}

}  // namespace

int64_t directional_scan_infer_units(const DirectionalScanInferParams& p) {
  return p.batch * p.num_directions * ((p.dim + kDirectionalScanInferBlock - 1) / kDirectionalScanInferBlock);
}

void check_directional_scan_infer_params(const DirectionalScanInferParams& p) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat64)
    fail(std::string("dtype must be float32 or float64, got ") + dtype_name(p.dtype));
  if (p.batch < 0 || p.dim < 0) fail("batch and dim must be non-negative");
  if (p.num_directions < 1) fail("num_directions must be >= 1, got " + str(p.num_directions));
  if (p.length < 1) fail("length must be >= 1, got " + str(p.length));
  if (p.num_tokens < 1) fail("num_tokens must be >= 1, got " + str(p.num_tokens));
  if (p.dstate < 1 || p.dstate > kSelectiveScanMaxDstate)
    fail("dstate (N) must be in [1, " + str(kSelectiveScanMaxDstate) + "], got " + str(p.dstate));
  if (p.dt_rank < 0 || p.dt_rank > kDirectionalScanMaxDtRank)
    fail("dt_rank must be in [0, " + str(kDirectionalScanMaxDtRank) + "], got " + str(p.dt_rank));
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.index) fail("the index table must not be null");
  if (!p.u.ptr || !p.A || !p.B.ptr || !p.C.ptr) fail("u, A, B and C must not be null");
  if (!p.out) fail("out must not be null");
  if (p.dt_rank > 0) {
    if (!p.dt.ptr || !p.dt_weight) fail("dt_rank > 0 needs dt and dt_weight");
    if (p.delta.ptr) fail("give either delta or (dt, dt_weight), not both");
  } else if (!p.delta.ptr) {
    fail("delta must not be null (or give dt and dt_weight with dt_rank > 0)");
  }
  check_index(p);
}

void directional_scan_infer_cpu(const DirectionalScanInferParams& p) {
  check_directional_scan_infer_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().dir_infer(p);
}

}  // namespace localmamba
