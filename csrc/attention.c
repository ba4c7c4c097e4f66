/* attention.c - STUB, to be written */
#include "internal.h"
void slm_rope(float *x, const int32_t *pos, int64_t m, int64_t n_heads, int64_t head_dim,
              float base, int interleaved) {}
int slm_attention(slm_pool *pool, const float *q, const float *k_new, const float *v_new,
                  float *k_cache, float *v_cache, float *out,
                  int64_t m, int64_t start_pos, int64_t max_seq,
                  int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) { return SLM_E_TYPE; }
