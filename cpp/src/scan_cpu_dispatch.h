// Run-time choice of the CPU scan kernels' SIMD level: one enum, picked once, and the table of
// entry points each per-level translation unit (scan_cpu_isa.inc, selective_scan_cpu_baseline.cpp)
// provides. Both the selective and the directional scan dispatch through it.
#pragma once

#include "localmamba/directional_scan.h"
#include "localmamba/directional_scan_infer.h"
#include "localmamba/directional_scan_train.h"
#include "localmamba/gated_sum_train.h"
#include "localmamba/mixer_infer.h"
#include "localmamba/scan_conv_train.h"
#include "localmamba/selective_scan.h"

namespace localmamba {

enum class CpuIsa { kBaseline, kAvx2, kAvx512 };

struct ScanCpuKernels {
  bool compiled;  // false: this build has no kernels for the level (the entry points throw)
  void (*fwd)(const SelectiveScanParams&);
  void (*bwd)(const SelectiveScanParams&, const SelectiveScanGrads&);
  void (*dir_fwd)(const DirectionalScanParams&);
  void (*dir_bwd)(const DirectionalScanParams&, const DirectionalScanGrads&);
  void (*dir_infer)(const DirectionalScanInferParams&);
  void (*dir_train_bwd)(const DirectionalScanInferParams&, const DirectionalScanTrainGrads&);
  void (*scan_conv_infer)(const ScanConvInferParams&);
  void (*gate_stats_infer)(const GateStatsInferParams&);
  void (*gated_merge_infer)(const GatedMergeInferParams&);
  void (*scan_conv_train_bwd)(const ScanConvInferParams&, const ScanConvTrainGrads&);
  void (*gate_grad)(const GatedSumTrainParams&);
  void (*gated_sum_bwd_y)(const GatedSumTrainParams&);
};

namespace ss_baseline {
extern const ScanCpuKernels kKernels;
}
namespace ss_avx2 {
extern const ScanCpuKernels kKernels;
}
namespace ss_avx512 {
extern const ScanCpuKernels kKernels;
}

// The widest level that is compiled and that this CPU runs, capped by LOCALMAMBA_CPU_ISA
// (baseline | avx2; for testing the other code paths). Picked on the first call.
CpuIsa scan_cpu_isa();
const char* cpu_isa_name(CpuIsa isa);
const ScanCpuKernels& scan_cpu_kernels();  // of scan_cpu_isa()

}  // namespace localmamba
