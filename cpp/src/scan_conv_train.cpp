// Argument validation, workspace layout and the CPU entry point of scan_conv_infer's backward
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

int64_t aligned(int64_t bytes) { return (bytes + 63) / 64 * 64; }

int64_t element_bytes(const ScanConvInferParams& p) { return p.dtype == DType::kFloat64 ? 8 : 4; }

// The step at which each direction reads each token (-1: never), into the workspace; throws when a
// direction reads a token twice (dx would need a sum the pass-2 order does not define).
void build_inverse(const ScanConvInferParams& p, int64_t* inverse) {
  for (int64_t i = 0; i < p.num_directions * p.num_tokens; ++i) inverse[i] = -1;
  for (int64_t k = 0; k < p.num_directions; ++k)
    for (int64_t s = 0; s < p.length; ++s) {
      const int64_t tok = p.index[k * p.length + s];
      if (tok < 0) continue;
      int64_t& slot = inverse[k * p.num_tokens + tok];
      if (slot >= 0)
        fail("direction " + str(k) + " reads token " + str(tok) + " twice (steps " + str(slot) + " and " + str(s) +
             "); every direction must read each token at most once");
      slot = s;
    }
}

}  // namespace

ScanConvTrainWorkspace scan_conv_train_workspace(const ScanConvInferParams& p) {
  ScanConvTrainWorkspace w;
  const int64_t elem = element_bytes(p);
  w.inverse_offset = 0;
  w.dpre_offset = aligned(p.num_directions * p.num_tokens * static_cast<int64_t>(sizeof(int64_t)));
  const int64_t dpre_bytes = p.silu ? aligned(p.batch * p.num_directions * p.length * p.dim * elem) : 0;
  w.partial_offset = w.dpre_offset + dpre_bytes;
  w.bytes = w.partial_offset + aligned(scan_conv_infer_units(p) * (p.taps + 1) * p.dim * elem);
  return w;
}

int64_t scan_conv_train_dx_units(const ScanConvInferParams& p) {
  return p.batch * ((p.num_tokens + kScanConvTrainTokens - 1) / kScanConvTrainTokens);
}

int64_t scan_conv_train_reduce_units(const ScanConvInferParams& p) { return p.num_directions * (p.taps + 1); }

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
  const int64_t need = scan_conv_train_workspace(p).bytes;
  if (!g.workspace || g.workspace_bytes < need)
    fail("the workspace needs " + str(need) + " bytes, got " + str(g.workspace ? g.workspace_bytes : 0));
  if (reinterpret_cast<uintptr_t>(g.workspace) % 64 != 0) fail("workspace must be 64-byte aligned");
}

void scan_conv_train_bwd_cpu(const ScanConvInferParams& p, const ScanConvTrainGrads& g) {
  check_scan_conv_train_grads(p, g);
  if (p.dim == 0) return;
  if (p.batch > 0)
    build_inverse(p, reinterpret_cast<int64_t*>(static_cast<char*>(g.workspace) + scan_conv_train_workspace(p).inverse_offset));
  scan_cpu_kernels().scan_conv_train_bwd(p, g);
}

}  // namespace localmamba
