// Argument validation and the CPU entry points of the gated sum's backward (gated_sum_train.h),
// dispatched to the SIMD level the scans picked.
#include "localmamba/gated_sum_train.h"

#include <stdexcept>
#include <string>

#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string(op) + ": " + message);
}

void check_common(const char* op, const GatedSumTrainParams& p) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat64)
    fail(op, std::string("dtype must be float32 or float64, got ") + dtype_name(p.dtype));
  if (p.batch < 0 || p.dim < 0) fail(op, "batch and dim must be non-negative");
  if (p.num_directions < 1) fail(op, "num_directions must be >= 1, got " + std::to_string(p.num_directions));
  if (p.num_tokens < 1) fail(op, "num_tokens must be >= 1, got " + std::to_string(p.num_tokens));
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.y || !p.dout || !p.out) fail(op, "y, dout and out must not be null");
}

}  // namespace

int64_t gated_sum_train_units(const GatedSumTrainParams& p) {
  return p.batch * p.num_directions * ((p.num_tokens + kGatedSumTrainTokens - 1) / kGatedSumTrainTokens);
}

int64_t gated_sum_train_workspace_elements(const GatedSumTrainParams& p) { return gated_sum_train_units(p) * p.dim; }

void check_gate_grad_params(const GatedSumTrainParams& p) {
  constexpr const char* op = "gate_grad";
  check_common(op, p);
  if (p.batch == 0 || p.dim == 0) return;
  const int64_t need = gated_sum_train_workspace_elements(p);
  if (!p.workspace || p.workspace_elements < need)
    fail(op, "the workspace needs " + std::to_string(need) + " elements, got " +
                 std::to_string(p.workspace ? p.workspace_elements : 0));
}

void check_gated_sum_bwd_y_params(const GatedSumTrainParams& p) {
  constexpr const char* op = "gated_sum_bwd_y";
  check_common(op, p);
  if (!(p.eps >= 0)) fail(op, "eps must be >= 0");
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.gate || !p.token_grad) fail(op, "gate and token_grad must not be null");
}

void gate_grad_cpu(const GatedSumTrainParams& p) {
  check_gate_grad_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().gate_grad(p);
}

void gated_sum_bwd_y_cpu(const GatedSumTrainParams& p) {
  check_gated_sum_bwd_y_params(p);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().gated_sum_bwd_y(p);
}

}  // namespace localmamba
