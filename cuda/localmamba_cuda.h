// Host-side entry points of the CUDA implementation. Plain C++: includable from code that
// is not compiled by nvcc (the bindings), so nothing here mentions CUDA types.
#pragma once

#include <string>

#include "localmamba/indexed_gather.h"

namespace localmamba {
namespace cuda {

// Number of usable CUDA devices; 0 when there is no device *or* no (sufficient) driver.
// Never throws.
int device_count();

// Human-readable reason when device_count() is 0 ("no CUDA device: ...").
std::string device_status();

// Architectures the kernels were compiled for, e.g. "80;90".
std::string compiled_architectures();

// CUDA runtime version the extension was built against (e.g. 13000).
int runtime_version();

// Same contract as indexed_gather_cpu; src, dst and index live in device memory.
void indexed_gather(const IndexedGatherParams& params);

}  // namespace cuda
}  // namespace localmamba
