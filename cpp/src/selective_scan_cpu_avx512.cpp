// CPU scan kernels for x86-64 CPUs with AVX-512F (64-byte vectors), picked at run time.
#define LOCALMAMBA_ISA_TARGET "avx512f,avx2,fma"
#define LOCALMAMBA_SS_VECTOR_BYTES 64
#define LOCALMAMBA_ISA_NAMESPACE ss_avx512
#define LOCALMAMBA_ISA_LABEL "AVX-512"
#include "scan_cpu_isa.inc"
