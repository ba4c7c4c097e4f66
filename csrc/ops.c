/* ops.c - STUB, to be written */
#include "internal.h"
void slm_rmsnorm(const float *x, const float *weight, float *out, int64_t m, int64_t d, float eps) {}
void slm_silu_mul(const float *gate, const float *up, float *out, int64_t n) {}
void slm_add(float *x, const float *y, int64_t n) {}
void slm_softmax(float *x, int64_t m, int64_t n) {}
