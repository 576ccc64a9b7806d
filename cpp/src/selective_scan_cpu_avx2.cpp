// CPU scan kernels for x86-64 CPUs with AVX2 and FMA (32-byte vectors), picked at run time.
#define LOCALMAMBA_ISA_TARGET "avx2,fma"
#define LOCALMAMBA_SS_VECTOR_BYTES 32
#define LOCALMAMBA_ISA_NAMESPACE ss_avx2
#define LOCALMAMBA_ISA_LABEL "AVX2"
#include "scan_cpu_isa.inc"
