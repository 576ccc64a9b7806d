// Argument validation, unit split and the CPU entry point of the channels-last directional
// scan's backward, dispatched to the SIMD level the selective scan picked.
#include <stdexcept>
#include <string>

#include "localmamba/directional_scan_infer.h"
#include "localmamba/directional_scan_train.h"
#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument("directional_scan_train_bwd: " + message);
}

int64_t element_bytes(const DirectionalScanInferParams& p) { return p.dtype == DType::kFloat64 ? 8 : 4; }

}  // namespace

int64_t directional_scan_train_segments(const DirectionalScanInferParams& p) {
  const int64_t blocks = (p.dim + kDirectionalScanInferBlock - 1) / kDirectionalScanInferBlock;
  const int64_t rows = p.batch * p.num_directions;
  if (blocks <= 1 || rows <= 0) return 1;
  int64_t want = (kDirectionalScanTrainTargetUnits + rows - 1) / rows;
  want = want < blocks ? want : blocks;
  const int64_t blocks_per_segment = (blocks + want - 1) / want;
  return (blocks + blocks_per_segment - 1) / blocks_per_segment;  // no empty segment
}

int64_t directional_scan_train_units(const DirectionalScanInferParams& p) {
  return p.batch * p.num_directions * directional_scan_train_segments(p);
}

int64_t directional_scan_train_workspace_bytes(const DirectionalScanInferParams& p) {
  const int64_t partials = 2 * directional_scan_train_segments(p) * p.batch * p.num_directions * p.length * p.dstate;
  const int64_t small = p.batch * p.num_directions * p.dim * (p.dstate + 2);
  return (partials + small) * element_bytes(p);
}

void check_directional_scan_train_grads(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  check_directional_scan_infer_params(p);
  if (p.weights) fail("direction weights are not supported (params.weights must be null)");
  if (p.batch == 0 || p.dim == 0) return;
  if (!g.dout.ptr) fail("dout must not be null");
  if (!g.du.ptr || !g.ddelta.ptr || !g.dB.ptr || !g.dC.ptr || !g.dA) fail("du, ddelta, dB, dC and dA must not be null");
  if (p.z.ptr && !g.dz.ptr) fail("dz must not be null when z is given");
  if (p.u.stride_direction == 0 && p.num_directions > 1 && g.du.stride_direction == 0)
    fail("du needs its own rows per direction (direction stride != 0); sum them for a shared u");
  if (p.z.ptr && p.z.stride_direction == 0 && p.num_directions > 1 && g.dz.stride_direction == 0)
    fail("dz needs its own rows per direction (direction stride != 0); sum them for a shared z");
  if (!g.workspace || g.workspace_bytes < directional_scan_train_workspace_bytes(p))
    fail("workspace must hold directional_scan_train_workspace_bytes = " +
         std::to_string(directional_scan_train_workspace_bytes(p)) + " bytes, got " +
         std::to_string(g.workspace_bytes));
  if (reinterpret_cast<uintptr_t>(g.workspace) % 64 != 0) fail("workspace must be 64-byte aligned");
}

void directional_scan_train_bwd_cpu(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  check_directional_scan_train_grads(p, g);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().dir_train_bwd(p, g);
}

}  // namespace localmamba
