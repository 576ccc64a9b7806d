#include "scan_cpu_dispatch.h"

#include <cstdlib>
#include <string>

namespace localmamba {
namespace {

bool cpu_supports(bool avx512) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2_fma && (!avx512 || __builtin_cpu_supports("avx512f"));
#else
  (void)avx512;
  return false;
#endif
}

CpuIsa pick() {
  const char* cap = std::getenv("LOCALMAMBA_CPU_ISA");
  const std::string limit = cap ? cap : "";
  if (limit != "baseline" && limit != "avx2" && ss_avx512::kKernels.compiled && cpu_supports(true)) {
    return CpuIsa::kAvx512;
  }
  if (limit != "baseline" && ss_avx2::kKernels.compiled && cpu_supports(false)) return CpuIsa::kAvx2;
  return CpuIsa::kBaseline;
}

}  // namespace

CpuIsa scan_cpu_isa() {
  static const CpuIsa isa = pick();
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512f";
    case CpuIsa::kAvx2: return "avx2+fma";
    default: return "baseline";
  }
}

const ScanCpuKernels& scan_cpu_kernels() {
  switch (scan_cpu_isa()) {
    case CpuIsa::kAvx512: return ss_avx512::kKernels;
    case CpuIsa::kAvx2: return ss_avx2::kKernels;
    default: return ss_baseline::kKernels;
  }
}

const char* selective_scan_cpu_isa() { return cpu_isa_name(scan_cpu_isa()); }

}  // namespace localmamba
