// CPU selective scan kernels at the baseline SIMD level of the build (SSE2 on x86-64,
// NEON on AArch64): 16-byte vectors.
#define LOCALMAMBA_SS_VECTOR_BYTES 16
#include "selective_scan_cpu_kernel.h"
#include "directional_scan_cpu_kernel.h"
#include "directional_scan_infer_cpu_kernel.h"

namespace localmamba {
namespace ss_baseline {
void fwd(const SelectiveScanParams& p) { run_fwd(p); }
void bwd(const SelectiveScanParams& p, const SelectiveScanGrads& g) { run_bwd(p, g); }
void dir_fwd(const DirectionalScanParams& p) { run_dir_fwd(p); }
void dir_bwd(const DirectionalScanParams& p, const DirectionalScanGrads& g) { run_dir_bwd(p, g); }
void dir_infer(const DirectionalScanInferParams& p) { run_dir_infer(p); }
}  // namespace ss_baseline
}  // namespace localmamba
