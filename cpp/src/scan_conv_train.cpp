// Argument validation, work split and the CPU entry point of scan_conv_infer's backward
// (scan_conv_train.h), dispatched to the SIMD level the scans picked.
#include "localmamba/scan_conv_train.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("scan_conv_train_bwd: " + message); }

std::string str(int64_t v) { return std::to_string(v); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t scan_conv_train_segment_channels(const ScanConvInferParams& p) {
  const int64_t blocks = ceil_div(p.dim, kScanConvTrainBlock);
  if (blocks <= 1 || p.batch <= 0) return blocks * kScanConvTrainBlock;
  int64_t want = ceil_div(kScanConvTrainTargetUnits, p.batch);
  want = want < blocks ? want : blocks;
  return ceil_div(blocks, want) * kScanConvTrainBlock;
}

int64_t scan_conv_train_segments(const ScanConvInferParams& p) {
  return p.dim <= 0 ? 0 : ceil_div(p.dim, scan_conv_train_segment_channels(p));
}

int64_t scan_conv_train_units(const ScanConvInferParams& p) { return p.batch * scan_conv_train_segments(p); }

int64_t scan_conv_train_reduce_units(const ScanConvInferParams& p) { return p.num_directions * (p.taps + 1); }

int64_t scan_conv_train_workspace_bytes(const ScanConvInferParams& p) {
  const int64_t element = p.dtype == DType::kFloat64 ? 8 : 4;
  return p.batch * p.num_directions * (p.taps + 1) * p.dim * element;
}

void check_scan_conv_train_grads(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  ScanConvInferParams forward = p;
  // The backward never reads or writes the forward's output: any non-null address passes its check.
  if (!forward.out) forward.out = g.dweight;
  check_scan_conv_infer_params(forward);
  if (p.dim == 0) return;
  if (!g.dweight) fail("dweight must not be null");
  if (g.dbias && !p.bias) fail("dbias needs params.bias");
  if (p.batch == 0) return;  // dweight and dbias are zeros; nothing else is read or written
  if (!g.dout || !g.dx) fail("dout and dx must not be null");
  if (g.dx_channels != 0 && g.dx_channels < p.dim)
    fail("dx_channels must be 0 or >= dim = " + str(p.dim) + ", got " + str(g.dx_channels));
  const int64_t need = scan_conv_train_workspace_bytes(p);
  if (!g.workspace || g.workspace_bytes < need)
    fail("the workspace needs " + str(need) + " bytes, got " + str(g.workspace ? g.workspace_bytes : 0));
  if (reinterpret_cast<uintptr_t>(g.workspace) % 64 != 0) fail("workspace must be 64-byte aligned");
}

void scan_conv_train_bwd_cpu(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  check_scan_conv_train_grads(p, g);
  if (p.dim == 0) return;
  scan_cpu_kernels().scan_conv_train_bwd(p, g);
}

}  // namespace localmamba
