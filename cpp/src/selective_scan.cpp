// Argument validation shared by the CPU and CUDA selective scan, and its CPU entry points
// (dispatched to the SIMD level picked at run time, scan_cpu_dispatch.h).
#include <stdexcept>
#include <string>

#include "localmamba/selective_scan.h"
#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("selective_scan: " + message); }

}  // namespace

void check_scan_element_types_and_sizes(const char* op, DType dtype, DType bc_dtype, int64_t batch, int64_t dim,
                                        int64_t length, int64_t dstate, int64_t chunk_size) {
  const auto fail_op = [op](const std::string& message) { throw std::invalid_argument(op + (": " + message)); };
  if (!is_floating(dtype)) fail_op(std::string("unsupported dtype ") + dtype_name(dtype));
  if (bc_dtype != dtype && bc_dtype != DType::kFloat32) {
    fail_op(std::string("B and C must be ") + dtype_name(dtype) + " (like u) or float32, got " + dtype_name(bc_dtype));
  }
  if (dtype == DType::kFloat64 && bc_dtype != DType::kFloat64) fail_op("B and C must be float64 when u is float64");
  if (batch < 0 || dim < 0) fail_op("batch and dim must be non-negative");
  if (length < 1) fail_op("length must be >= 1, got " + std::to_string(length));
  if (dstate < 1 || dstate > kSelectiveScanMaxDstate) {
    fail_op("dstate (N) must be in [1, " + std::to_string(kSelectiveScanMaxDstate) + "], got " +
            std::to_string(dstate));
  }
  if (chunk_size < 1) fail_op("chunk_size must be >= 1, got " + std::to_string(chunk_size));
}

void check_selective_scan_params(const SelectiveScanParams& p, bool backward) {
  check_scan_element_types_and_sizes("selective_scan", p.dtype, p.bc_dtype, p.batch, p.dim, p.length, p.dstate,
                                     p.chunk_size);
  if (p.n_groups < 1) fail("n_groups must be >= 1, got " + std::to_string(p.n_groups));
  if (p.dim % p.n_groups != 0) {
    fail("dim (" + std::to_string(p.dim) + ") must be divisible by the number of groups (" +
         std::to_string(p.n_groups) + ")");
  }
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.u || !p.delta || !p.A || !p.B || !p.C) fail("u, delta, A, B and C must not be null");
  if (!backward && !p.out) fail("out must not be null");
  if (backward && !p.chunk_states) fail("the backward needs the chunk states saved by the forward");
}

void selective_scan_fwd_cpu(const SelectiveScanParams& p) {
  check_selective_scan_params(p, false);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().fwd(p);
}

void selective_scan_bwd_cpu(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  check_selective_scan_params(p, true);
  if (!g.dout) fail("dout must not be null");
  scan_cpu_kernels().bwd(p, g);
}

}  // namespace localmamba
