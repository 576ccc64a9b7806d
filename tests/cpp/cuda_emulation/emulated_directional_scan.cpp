// The unmodified cuda/directional_scan.cu, compiled as C++ against the host emulation (include/cuda_runtime.h).
#include "directional_scan.cu"
