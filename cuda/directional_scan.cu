// CUDA directional selective scan (contract: cpp/include/localmamba/directional_scan.h).
#include <stdexcept>

#include "localmamba/directional_scan.h"

namespace localmamba {
namespace cuda {

void directional_scan_fwd(const DirectionalScanParams&) {
  throw std::runtime_error("directional_scan: the CUDA kernels are not implemented yet");
}
void directional_scan_bwd(const DirectionalScanParams&, const DirectionalScanGrads&) {
  throw std::runtime_error("directional_scan: the CUDA kernels are not implemented yet");
}

}  // namespace cuda
}  // namespace localmamba
