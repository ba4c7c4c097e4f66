/* matmul.c - STUB, to be written */
#include "internal.h"
int slm_matmul(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
               int64_t m, int64_t n, int64_t k) { return SLM_E_TYPE; }
