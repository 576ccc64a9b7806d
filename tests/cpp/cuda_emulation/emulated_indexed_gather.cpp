// The unmodified cuda/indexed_gather.cu, compiled as C++ against the host emulation (include/cuda_runtime.h).
#include "indexed_gather.cu"
