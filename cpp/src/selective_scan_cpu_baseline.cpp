// CPU selective scan kernels at the baseline SIMD level of the build (SSE2 on x86-64,
// NEON on AArch64): 16-byte vectors.
#define LOCALMAMBA_SS_VECTOR_BYTES 16
#include "selective_scan_cpu_kernel.h"
#include "directional_scan_cpu_kernel.h"
#include "directional_scan_infer_cpu_kernel.h"
#include "directional_scan_train_cpu_kernel.h"
#include "mixer_infer_cpu_kernel.h"
#include "scan_conv_train_cpu_kernel.h"
#include "gated_sum_train_cpu_kernel.h"
#include "scan_cpu_dispatch.h"

namespace localmamba {
namespace ss_baseline {
const ScanCpuKernels kKernels = {true, run_fwd, run_bwd, run_dir_fwd, run_dir_bwd, run_dir_infer,
                                run_dir_train_bwd, run_scan_conv_infer, run_gate_stats_infer, run_gated_merge_infer,
                                run_scan_conv_train_bwd, run_gate_grad, run_gated_sum_bwd_y};
}  // namespace ss_baseline
}  // namespace localmamba
