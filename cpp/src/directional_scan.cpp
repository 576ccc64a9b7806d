// Argument validation of the directional selective scan (shared by CPU and CUDA) and the CPU
// entry points, dispatched to the SIMD level picked at run time (scan_cpu_dispatch.h).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/directional_scan.h"
#include "localmamba/selective_scan.h"
#include "scan_cpu_dispatch.h"

namespace localmamba {

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument("directional_scan: " + message);
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

void check_directional_scan_params(const DirectionalScanParams& p, bool backward, bool check_index) {
  check_scan_element_types_and_sizes("directional_scan", p.dtype, p.bc_dtype, p.batch, p.dim, p.length, p.dstate,
                                     p.chunk_size);
  if (p.num_directions < 1) fail("num_directions must be >= 1, got " + str(p.num_directions));
  if (p.num_tokens < 1) fail("num_tokens must be >= 1, got " + str(p.num_tokens));
  if (p.dt_rank < 0 || p.dt_rank > kDirectionalScanMaxDtRank)
    fail("dt_rank must be in [0, " + str(kDirectionalScanMaxDtRank) + "], got " + str(p.dt_rank));
  if (p.batch == 0 || p.dim == 0) return;
  if (!p.index) fail("the index table must not be null");
  if (!p.u || !p.A || !p.B || !p.C) fail("u, A, B and C must not be null");
  if (p.dt_rank > 0) {
    if (!p.dt || !p.dt_weight) fail("dt_rank > 0 needs dt and dt_weight");
    if (p.delta) fail("give either delta or (dt, dt_weight), not both");
  } else if (!p.delta) {
    fail("delta must not be null (or give dt and dt_weight with dt_rank > 0)");
  }
  if (p.u_stride_direction == 0 && p.num_directions > 1 && p.sequence_inputs)
    fail("a u shared by all directions needs token-order inputs (sequence_inputs = false)");
  if (!backward && !p.out) fail("out must not be null");
  if (backward && !p.chunk_states) fail("the backward needs the chunk states saved by the forward");
  if (check_index) {
    // Every token exactly once per direction; the rest of the sequence is padding.
    std::vector<int64_t> seen(static_cast<size_t>(p.num_tokens));
    for (int64_t k = 0; k < p.num_directions; ++k) {
      std::fill(seen.begin(), seen.end(), 0);
      int64_t visited = 0;
      for (int64_t t = 0; t < p.length; ++t) {
        const int64_t v = p.index[k * p.length + t];
        if (v < -1 || v >= p.num_tokens)
          fail("index[" + str(k) + ", " + str(t) + "] = " + str(v) + " is outside [-1, " + str(p.num_tokens) + ")");
        if (v < 0) continue;
        if (seen[static_cast<size_t>(v)]++)
          fail("direction " + str(k) + " visits token " + str(v) + " more than once");
        ++visited;
      }
      if (visited != p.num_tokens)
        fail("direction " + str(k) + " visits " + str(visited) + " of the " + str(p.num_tokens) +
             " tokens; every token must be visited exactly once");
    }
  }
}

void directional_scan_fwd_cpu(const DirectionalScanParams& p) {
  check_directional_scan_params(p, false, true);
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().dir_fwd(p);
}

void directional_scan_bwd_cpu(const DirectionalScanParams& p, const DirectionalScanGrads& g) {
  check_directional_scan_params(p, true, true);
  if (!g.dout) fail("dout must not be null");
  if (p.batch == 0 || p.dim == 0) return;
  scan_cpu_kernels().dir_bwd(p, g);
}

}  // namespace localmamba
