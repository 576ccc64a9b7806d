// The unmodified cuda/device.cu, compiled as C++ against the host emulation (include/cuda_runtime.h).
#include "device.cu"
