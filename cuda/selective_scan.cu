// Placeholder until the CUDA kernels land: keeps CUDA builds linking.
#include <stdexcept>

#include "localmamba/selective_scan.h"

namespace localmamba {
namespace cuda {
int64_t selective_scan_cuda_chunk_size() { return 256; }
void selective_scan_fwd(const SelectiveScanParams&) { throw std::runtime_error("selective_scan: CUDA kernels not built yet"); }
void selective_scan_bwd(const SelectiveScanParams&, const SelectiveScanGrads&) {
  throw std::runtime_error("selective_scan: CUDA kernels not built yet");
}
}  // namespace cuda
}  // namespace localmamba
