/* internal.h - declarations shared between slmkit's C files, not part of the public API. */
#ifndef SLMKIT_INTERNAL_H
#define SLMKIT_INTERNAL_H

#include "slmkit.h"

/* Run fn(ctx, start, end) over [0, n) split into contiguous, even chunks (a few per thread, taken
 * from a shared counter by the workers and the caller; a chunk is not tied to a thread, so keep
 * scratch per call of fn). Returns when every chunk is done. pool may be NULL (serial). */
typedef void (*slm_range_fn)(void *ctx, int64_t start, int64_t end);
void slm_parallel_for(slm_pool *pool, int64_t n, slm_range_fn fn, void *ctx);

/* Run fn(ctx, ith, nth) on nth threads at once (the pool's threads; 1 when pool is NULL or the
 * caller is already a pool thread), ith = 0 .. nth-1, and return nth once all have returned.
 * The members may wait for each other (spinning on shared counters). */
typedef void (*slm_team_fn)(void *ctx, int ith, int nth);
int slm_pool_team(slm_pool *pool, slm_team_fn fn, void *ctx);

/* The nth that slm_pool_team(pool, ...) would use from the calling thread. */
int slm_pool_team_size(const slm_pool *pool);

/* A pause for spin-wait loops. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define slm_cpu_relax() _mm_pause()
#else
#define slm_cpu_relax() ((void)0)
#endif



/* ---- repacked weights (quant.c; layouts in blocks.h) ---------------------------------------- */

/* The base type (SLM_Q4_0, SLM_Q4_1, SLM_Q8_0) of a repacked type, or 0. */
static inline int slm_x8_base(int type) {
    return type == SLM_Q4_0_X8 ? SLM_Q4_0 : type == SLM_Q4_1_X8 ? SLM_Q4_1
         : type == SLM_Q8_0_X8 ? SLM_Q8_0 : 0;
}

/* Row r (0..7) of one repacked block (block_q4_0x8, ...), as a block of the base type. */
void slm_x8_unpack(int type, const void *x8, int r, void *block);

/* ---- RoPE and attention pieces (attention.c), for passes that schedule their own work ---- */

/* cos/sin of pairs j0 .. j0+nj-1 at position pos: c[nj], s[nj]. */
void slm_rope_angles(int32_t pos, int64_t j0, int64_t nj, int64_t head_dim, float base,
                     float *c, float *s);
/* Rotate pairs j0 .. j0+nj-1 of every head of one row xr[n_heads, head_dim] by c/s. */
void slm_rope_apply(float *xr, int64_t n_heads, int64_t head_dim, int64_t j0, int64_t nj,
                    const float *c, const float *s, int interleaved);

typedef struct {
    const float *q;          /* row i, head h at q + i*q_stride + h*head_dim (already rotated) */
    int64_t q_stride;
    int kv_type;             /* SLM_F32, or SLM_Q8_0: int8 rows with one float scale each */
    const void *k_cache;     /* [n_kv_heads, max_seq, head_dim], rows 0 .. start_pos+i filled */
    const void *v_cache;     /* [n_kv_heads, max_seq, head_dim] */
    const float *k_scale;    /* [n_kv_heads, max_seq] (int8 caches) */
    const float *v_scale;    /* [n_kv_heads, max_seq] (int8 caches) */
    float *out;              /* row i, head h at out + i*out_stride + h*head_dim; may alias q */
    int64_t out_stride;
    int64_t start_pos, max_seq, n_heads, n_kv_heads, head_dim;
    float scale;             /* 1/sqrt(head_dim) */
} slm_attn_args;

/* An int8 cache row: q[hd] = round(x / scale), scale = amax / 127 (0 for a zero row). */
void slm_kv_quantize_row(const float *x, int8_t *q, float *scale, int64_t head_dim);

/* Floats of scratch that an attention kernel (slm_kernels.attend) needs for r rows of hc heads
 * when rows reach n_ctx positions. */
size_t slm_attend_scratch(int64_t r, int64_t hc, int64_t n_ctx, int64_t head_dim);

/* Causal attention of query rows i0 .. i0+r-1 (row i at position start_pos + i) for query
 * heads h0 .. h0+hc-1, all of KV head g. The plain-C reference of slm_kernels.attend. */
void slm_attend_generic(const slm_attn_args *a, int64_t i0, int64_t r, int64_t g, int64_t h0,
                        int64_t hc, float *scratch);

#endif
