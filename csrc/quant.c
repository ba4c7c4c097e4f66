/* quant.c - STUB, to be written */
#include "internal.h"
size_t slm_row_size(int type, int64_t k) { return 0; }
int slm_quantize(int type, const float *src, void *dst, int64_t n, int64_t k) { return SLM_E_TYPE; }
int slm_dequantize(int type, const void *src, float *dst, int64_t n, int64_t k) { return SLM_E_TYPE; }
