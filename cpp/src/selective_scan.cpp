// Argument validation shared by the CPU and CUDA selective scan, and the run-time choice of
// the CPU kernel's SIMD level.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "localmamba/selective_scan.h"

namespace localmamba {

namespace ss_baseline {
void fwd(const SelectiveScanParams& p);
void bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g);
}  // namespace ss_baseline
namespace ss_avx2 {
bool compiled();
void fwd(const SelectiveScanParams& p);
void bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g);
}  // namespace ss_avx2
namespace ss_avx512 {
bool compiled();
void fwd(const SelectiveScanParams& p);
void bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g);
}  // namespace ss_avx512

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("selective_scan: " + message); }

bool cpu_has_avx2_fma() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512f() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

enum class Isa { kBaseline, kAvx2, kAvx512 };

// LOCALMAMBA_CPU_ISA=baseline|avx2 caps the level (for testing the other code paths).
Isa pick_isa() {
  static const Isa isa = [] {
    const char* cap = std::getenv("LOCALMAMBA_CPU_ISA");
    const std::string limit = cap ? cap : "";
    if (limit != "baseline" && limit != "avx2" && ss_avx512::compiled() && cpu_has_avx512f()) return Isa::kAvx512;
    if (limit != "baseline" && ss_avx2::compiled() && cpu_has_avx2_fma()) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  return isa;
}

}  // namespace

void check_selective_scan_params(const SelectiveScanParams& p, bool backward) {
  if (!is_floating(p.dtype)) fail(std::string("unsupported dtype ") + dtype_name(p.dtype));
  if (p.bc_dtype != p.dtype && p.bc_dtype != DType::kFloat32) {
    fail(std::string("B and C must be ") + dtype_name(p.dtype) + " (like u) or float32, got " +
         dtype_name(p.bc_dtype));
  }
  if (p.dtype == DType::kFloat64 && p.bc_dtype != DType::kFloat64) fail("B and C must be float64 when u is float64");
  if (p.batch < 0 || p.dim < 0) fail("batch and dim must be non-negative");
  if (p.length < 1) fail("length must be >= 1, got " + std::to_string(p.length));
  if (p.dstate < 1 || p.dstate > kSelectiveScanMaxDstate) {
    fail("dstate (N) must be in [1, " + std::to_string(kSelectiveScanMaxDstate) + "], got " + std::to_string(p.dstate));
  }
  if (p.n_groups < 1) fail("n_groups must be >= 1, got " + std::to_string(p.n_groups));
  if (p.dim % p.n_groups != 0) {
    fail("dim (" + std::to_string(p.dim) + ") must be divisible by the number of groups (" +
         std::to_string(p.n_groups) + ")");
  }
  if (p.chunk_size < 1) fail("chunk_size must be >= 1, got " + std::to_string(p.chunk_size));
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.u || !p.delta || !p.A || !p.B || !p.C) fail("u, delta, A, B and C must not be null");
  if (!backward && !p.out) fail("out must not be null");
  if (backward && !p.chunk_states) fail("the backward needs the chunk states saved by the forward");
}

const char* selective_scan_cpu_isa() {
  switch (pick_isa()) {
    case Isa::kAvx512: return "avx512f";
    case Isa::kAvx2: return "avx2+fma";
    default: return "baseline";
  }
}

void selective_scan_fwd_cpu(const SelectiveScanParams& p) {
  check_selective_scan_params(p, false);
  if (p.batch == 0 || p.dim == 0) return;
  switch (pick_isa()) {
    case Isa::kAvx512: ss_avx512::fwd(p); break;
    case Isa::kAvx2: ss_avx2::fwd(p); break;
    default: ss_baseline::fwd(p); break;
  }
}

void selective_scan_bwd_cpu(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  check_selective_scan_params(p, true);
  if (!g.dout) fail("dout must not be null");
  switch (pick_isa()) {
    case Isa::kAvx512: ss_avx512::bwd(p, g); break;
    case Isa::kAvx2: ss_avx2::bwd(p, g); break;
    default: ss_baseline::bwd(p, g); break;
  }
}

}  // namespace localmamba
