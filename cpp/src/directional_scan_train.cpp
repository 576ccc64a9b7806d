// Argument validation, unit split and the CPU entry point of the channels-last directional
// scan's backward, dispatched to the SIMD level the selective scan picked.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "localmamba/directional_scan_infer.h"
#include "localmamba/directional_scan_train.h"
#include "localmamba/parallel.h"
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

DirectionalScanTrainLayout directional_scan_train_layout(const DirectionalScanInferParams& p) {
  auto aligned = [](int64_t bytes) { return (bytes + 63) / 64 * 64; };
  const int64_t es = element_bytes(p), L = p.length, N = p.dstate, V = kDirectionalScanTrainMaxVectorBytes;
  DirectionalScanTrainLayout lay;
  lay.segments = directional_scan_train_segments(p);
  const int64_t R = p.dt_rank;
  const int64_t partials = lay.segments > 1 ? lay.segments * p.batch * p.num_directions * L * (2 * N + R) : 0;
  lay.small_offset = aligned(partials * es);
  lay.slot_offset = lay.small_offset + aligned(p.batch * p.num_directions * p.dim * (N + 2 + R) * es);
  // 9 per-step vectors, the block's states (L + 1 rows) and decays (L rows), dB / dC / ddt
  // accumulators (L * N, L * N, L * R vectors), two row-pointer arrays: the pieces TrainSlot
  // carves, each 64-byte aligned
  const int64_t block = kDirectionalScanTrainStateBlock;
  lay.slot_bytes = 9 * aligned(L * V) + aligned((L + 1) * block * V) + aligned(L * block * V) + 2 * aligned(L * N * V) +
                   aligned(L * R * V) + 2 * aligned(L * static_cast<int64_t>(sizeof(void*)));
  return lay;
}

int64_t directional_scan_train_workspace_bytes(const DirectionalScanInferParams& p) {
  const DirectionalScanTrainLayout lay = directional_scan_train_layout(p);
  const int64_t units = directional_scan_train_units(p);
  const int64_t slots = std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), units));
  return lay.slot_offset + slots * lay.slot_bytes;
}

void check_directional_scan_train_grads(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  DirectionalScanInferParams forward = p;  // params.out is not used: dout stands in for the check
  if (!forward.out) forward.out = const_cast<void*>(g.dout.ptr);
  check_directional_scan_infer_params(forward);
  if (p.weights) fail("direction weights are not supported (params.weights must be null)");
  if (p.batch == 0 || p.dim == 0) return;
  if (!g.dout.ptr) fail("dout must not be null");
  if (!g.du.ptr || !g.dB.ptr || !g.dC.ptr || !g.dA) fail("du, dB, dC and dA must not be null");
  if (p.dt_rank == 0 && !g.ddelta.ptr) fail("ddelta must not be null (dt_rank == 0)");
  if (p.dt_rank == 0 && (g.ddt.ptr || g.ddt_weight)) fail("ddt and ddt_weight need dt_rank > 0");
  if (p.z.ptr && !g.dz.ptr) fail("dz must not be null when z is given");
  if (p.u.stride_direction == 0 && p.num_directions > 1 && g.du.stride_direction == 0)
    fail("du needs its own rows per direction (direction stride != 0); sum them for a shared u");
  if (p.z.ptr && p.z.stride_direction == 0 && p.num_directions > 1 && g.dz.stride_direction == 0)
    fail("dz needs its own rows per direction (direction stride != 0); sum them for a shared z");
  const DirectionalScanTrainLayout lay = directional_scan_train_layout(p);
  if (!g.workspace || lay.slots_in(g.workspace_bytes) < 1)
    fail("workspace must hold at least " + std::to_string(lay.slot_offset + lay.slot_bytes) +
         " bytes (directional_scan_train_workspace_bytes = " + std::to_string(directional_scan_train_workspace_bytes(p)) +
         " for every thread), got " + std::to_string(g.workspace_bytes));
  if (reinterpret_cast<uintptr_t>(g.workspace) % 64 != 0) fail("workspace must be 64-byte aligned");
}

void directional_scan_train_bwd_cpu(const DirectionalScanInferParams& p, const DirectionalScanTrainGrads& g) {
  check_directional_scan_train_grads(p, g);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().dir_train_bwd(p, g);
}

}  // namespace localmamba
