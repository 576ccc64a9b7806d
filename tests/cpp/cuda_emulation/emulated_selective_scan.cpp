// The unmodified cuda/selective_scan.cu, compiled as C++ against the host emulation (include/cuda_runtime.h).
#include "selective_scan.cu"
