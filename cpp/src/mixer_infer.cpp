// Argument validation and the CPU entry points of the mixers' forward-only passes
// (mixer_infer.h), dispatched to the SIMD level the scans picked.
#include "localmamba/mixer_infer.h"

#include <stdexcept>
#include <string>

#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string(op) + ": " + message);
}

std::string str(int64_t v) { return std::to_string(v); }

int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }

void check_common(const char* op, DType dtype, int64_t batch, int64_t num_directions, int64_t dim, int64_t tokens) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64)
    fail(op, std::string("dtype must be float32 or float64, got ") + dtype_name(dtype));
  if (batch < 0 || dim < 0) fail(op, "batch and dim must be non-negative");
  if (num_directions < 1) fail(op, "num_directions must be >= 1, got " + str(num_directions));
  if (tokens < 1) fail(op, "num_tokens must be >= 1, got " + str(tokens));
}

}  // namespace

int64_t scan_conv_infer_units(const ScanConvInferParams& p) {
  return p.batch * p.num_directions * blocks_of(p.length, kScanConvInferSteps);
}

int64_t gate_stats_infer_units(const GateStatsInferParams& p) {
  return p.batch * p.num_directions * blocks_of(p.num_tokens, kGateStatsInferTokens);
}

int64_t gated_merge_infer_units(const GatedMergeInferParams& p) {
  return p.batch * blocks_of(p.num_tokens, kGatedMergeInferTokens);
}

int64_t gate_stats_infer_workspace_elements(const GateStatsInferParams& p) {
  return gate_stats_infer_units(p) * p.dim;
}

void check_scan_conv_infer_params(const ScanConvInferParams& p) {
  constexpr const char* op = "scan_conv_infer";
  check_common(op, p.dtype, p.batch, p.num_directions, p.dim, p.num_tokens);
  if (p.length < 1) fail(op, "length must be >= 1, got " + str(p.length));
  if (p.taps < 1 || p.taps > kScanConvMaxTaps)
    fail(op, "taps must be in [1, " + str(kScanConvMaxTaps) + "], got " + str(p.taps));
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.index || !p.x || !p.weight || !p.out) fail(op, "index, x, weight and out must not be null");
  for (int64_t i = 0; i < p.num_directions * p.length; ++i) {
    if (p.index[i] < -1 || p.index[i] >= p.num_tokens)
      fail(op, "index[" + str(i / p.length) + ", " + str(i % p.length) + "] = " + str(p.index[i]) +
                   " is outside [-1, " + str(p.num_tokens) + ")");
  }
}

void check_gate_stats_infer_params(const GateStatsInferParams& p) {
  constexpr const char* op = "gate_stats_infer";
  check_common(op, p.dtype, p.batch, p.num_directions, p.dim, p.num_tokens);
  if (!(p.eps >= 0)) fail(op, "eps must be >= 0");
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.y || !p.out) fail(op, "y and out must not be null");
  const int64_t need = gate_stats_infer_workspace_elements(p);
  if (!p.workspace || p.workspace_elements < need)
    fail(op, "the workspace needs " + str(need) + " elements, got " + str(p.workspace ? p.workspace_elements : 0));
}

void check_gated_merge_infer_params(const GatedMergeInferParams& p) {
  constexpr const char* op = "gated_merge_infer";
  check_common(op, p.dtype, p.batch, p.num_directions, p.dim, p.num_tokens);
  if (!(p.eps >= 0)) fail(op, "eps must be >= 0");
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.y || !p.gate || !p.out) fail(op, "y, gate and out must not be null");
  if (p.normalize && (!p.norm_weight || !p.norm_bias)) fail(op, "normalize needs norm_weight and norm_bias");
}

void scan_conv_infer_cpu(const ScanConvInferParams& p) {
  check_scan_conv_infer_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().scan_conv_infer(p);
}

void gate_stats_infer_cpu(const GateStatsInferParams& p) {
  check_gate_stats_infer_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().gate_stats_infer(p);
}

void gated_merge_infer_cpu(const GatedMergeInferParams& p) {
  check_gated_merge_infer_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().gated_merge_infer(p);
}

}  // namespace localmamba
