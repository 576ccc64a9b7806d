// CPU selective scan kernels for x86-64 CPUs with AVX2 and FMA (32-byte vectors), picked at
// run time. Only the kernel code below the target pragma uses AVX2: every header is
// included first, so inline functions shared with other translation units stay baseline.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>

#include "localmamba/dtype.h"
#include "localmamba/parallel.h"
#include "localmamba/directional_scan.h"
#include "localmamba/selective_scan.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LOCALMAMBA_SS_HAVE_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define LOCALMAMBA_SS_VECTOR_BYTES 32
#include "localmamba/selective_scan_cpu_kernel.h"
#include "localmamba/directional_scan_cpu_kernel.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace localmamba {
namespace ss_avx2 {
#ifdef LOCALMAMBA_SS_HAVE_AVX2
bool compiled() { return true; }
void fwd(const SelectiveScanParams& p) { run_fwd(p); }
void bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g) { run_bwd(p, g); }
void dir_fwd(const DirectionalScanParams& p) { run_dir_fwd(p); }
void dir_bwd(const DirectionalScanParams& p, const DirectionalScanGrads& g) { run_dir_bwd(p, g); }
#else
bool compiled() { return false; }
void fwd(const SelectiveScanParams&) { throw std::logic_error("selective_scan: AVX2 kernels not compiled"); }
void bwd(const SelectiveScanParams&, const SelectiveScanGrads&) {
  throw std::logic_error("selective_scan: AVX2 kernels not compiled");
}
void dir_fwd(const DirectionalScanParams&) { throw std::logic_error("directional_scan: AVX2 kernels not compiled"); }
void dir_bwd(const DirectionalScanParams&, const DirectionalScanGrads&) {
  throw std::logic_error("directional_scan: AVX2 kernels not compiled");
}
#endif
}  // namespace ss_avx2
}  // namespace localmamba
