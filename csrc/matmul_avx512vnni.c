/* matmul_avx512vnni.c - the AVX2 kernels of matmul_avx2.c compiled for CPUs with AVX-512 VNNI
 * (and VL, BW): the repacked-weight gemms then use vpdpwssd (multiply pairs of int16 and add into
 * int32 in one instruction) on 256-bit vectors, and the 32 vector registers of AVX-512 let a
 * tile hold 6 rows of activations instead of 4. Chosen at run time by dispatch.c. */
#define SLM_VNNI 1
#include "matmul_avx2.c"
