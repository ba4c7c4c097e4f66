/* matmul_avx2.c - AVX2 + FMA + F16C matmul kernels (placeholder: generic until written). */
#include "kernels.h"
const slm_kernels slm_kernels_avx2 = { 0 };
