/* attention.c - rotary position embedding and causal grouped-query attention over a KV cache.
 *
 * RoPE angles are computed in double (pos * base^(-2j/head_dim) reaches thousands of radians,
 * where a float angle would already be off by ~1e-4) and only the final cos/sin are rounded
 * to float. slm_rope_angles / slm_rope_apply are the two halves, so a forward pass can compute
 * the angles of its positions once and rotate every layer's q and k with them.
 *
 * Attention work is split into tasks of (block of query rows, KV head, slice of that KV head's
 * query heads). A task walks the cached K and V rows once and uses each row for all of its
 * query rows and heads, so K/V traffic is paid once per group instead of once per head. Tasks are spread over
 * the pool with slm_parallel_for. slm_attend_generic is the plain-C reference of the attention
 * kernel in the kernel table (attention_avx2.c has the SIMD one).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* ---- RoPE ------------------------------------------------------------------------------------ */

/* cos/sin are computed for this many frequency pairs at a time, so any head_dim works with a
 * fixed stack buffer (slm_rope returns void and must not need the heap). */
#define ROPE_CHUNK 64

void slm_rope_angles(int32_t pos, int64_t j0, int64_t nj, int64_t head_dim, float base,
                     float *c, float *s) {
    double p = (double)pos, log_base = log((double)base);
    for (int64_t j = 0; j < nj; j++) {
        /* base^(-2j/head_dim) = exp(-2j/head_dim * ln base), all in double */
        double theta = p * exp(-2.0 * (double)(j0 + j) / (double)head_dim * log_base);
        c[j] = (float)cos(theta);
        s[j] = (float)sin(theta);
    }
}

void slm_rope_apply(float *xr, int64_t n_heads, int64_t head_dim, int64_t j0, int64_t nj,
                    const float *c, const float *s, int interleaved) {
    int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *xh = xr + h * head_dim;   /* xh[head_dim] */
        if (interleaved) {
            for (int64_t j = 0; j < nj; j++) {
                float a = xh[2 * (j0 + j)], b = xh[2 * (j0 + j) + 1];
                xh[2 * (j0 + j)]     = a * c[j] - b * s[j];
                xh[2 * (j0 + j) + 1] = a * s[j] + b * c[j];
            }
        } else {
            for (int64_t j = 0; j < nj; j++) {
                float a = xh[j0 + j], b = xh[j0 + j + half];
                xh[j0 + j]        = a * c[j] - b * s[j];
                xh[j0 + j + half] = a * s[j] + b * c[j];
            }
        }
    }
}

void slm_rope(float *x, const int32_t *pos, int64_t m, int64_t n_heads, int64_t head_dim,
              float base, int interleaved) {
    int64_t half = head_dim / 2;   /* number of rotated pairs; an odd last element is left as is */
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j0 = 0; j0 < half; j0 += ROPE_CHUNK) {
            int64_t nj = half - j0 < ROPE_CHUNK ? half - j0 : ROPE_CHUNK;
            float c[ROPE_CHUNK], s[ROPE_CHUNK];   /* c[nj], s[nj]: cos/sin of pairs j0.. */
            slm_rope_angles(pos[i], j0, nj, head_dim, base, c, s);
            slm_rope_apply(x + i * n_heads * head_dim, n_heads, head_dim, j0, nj, c, s, interleaved);
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------- */

/* Independent partial sums in a dot product: gcc vectorises a[l]+=... over a small array
 * without -ffast-math, whereas one scalar accumulator would stay serial. */
#define DOT_LANES 16

static inline float dot(const float *a, const float *b, int64_t n) {
    float acc[DOT_LANES] = {0};   /* acc[DOT_LANES]: per-lane partial sums */
    int64_t i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int l = 0; l < DOT_LANES; l++) s += acc[l];
    return s;
}

size_t slm_attend_scratch(int64_t r, int64_t hc, int64_t n_ctx, int64_t head_dim) {
    int64_t n_pad = (n_ctx + 7) / 8 * 8;                 /* the SIMD kernels score 8 keys at once */
    /* 16 rows: 8 transposed keys and 8 dequantised key rows (int8 caches) */
    return (size_t)(head_dim * 16 + r * hc * (n_pad + head_dim));
}

void slm_kv_quantize_row(const float *x, int8_t *q, float *scale, int64_t head_dim) {
    float amax = 0.0f;
    for (int64_t d = 0; d < head_dim; d++) amax = fmaxf(amax, fabsf(x[d]));
    float s = amax / 127.0f, inv = s != 0.0f ? 1.0f / s : 0.0f;
    for (int64_t d = 0; d < head_dim; d++) q[d] = (int8_t)nearbyintf(x[d] * inv);
    *scale = s;
}

/* Row p of KV head g of a cache as floats: the row itself, or (int8) dequantised into buf. */
static const float *kv_row(const slm_attn_args *a, const void *cache, const float *scale,
                           int64_t g, int64_t p, float *buf) {
    int64_t hd = a->head_dim, row = g * a->max_seq + p;
    if (a->kv_type == SLM_F32) return (const float *)cache + row * hd;
    const int8_t *q = (const int8_t *)cache + row * hd;
    for (int64_t d = 0; d < hd; d++) buf[d] = scale[row] * (float)q[d];
    return buf;
}

/* One query row i of the reference: scratch holds hc * (n_pos + head_dim) + head_dim floats. */
static void attend_row(const slm_attn_args *a, int64_t i, int64_t g, int64_t h0, int64_t hc,
                       float *scratch) {
    int64_t hd = a->head_dim, n_pos = a->start_pos + i + 1;   /* causal: 0 .. start_pos+i */
    float *scores = scratch;                   /* scores[hc, n_pos] */
    float *acc = scratch + hc * n_pos;         /* acc[hc, head_dim] */
    float *row = acc + hc * hd;                /* row[head_dim]: a dequantised cache row */
    const float *qi = a->q + i * a->q_stride + h0 * hd;       /* qi[hc, head_dim] */

    /* scores: one pass over K, each row used by every head of the slice */
    for (int64_t p = 0; p < n_pos; p++) {
        const float *kp = kv_row(a, a->k_cache, a->k_scale, g, p, row);   /* kp[head_dim] */
        for (int64_t h = 0; h < hc; h++)
            scores[h * n_pos + p] = dot(qi + h * hd, kp, hd) * a->scale;
    }

    /* softmax per head, float32 with the max subtracted */
    slm_softmax(scores, hc, n_pos);

    /* weighted sum of V: one pass over V, accumulated in scratch so out may alias q */
    memset(acc, 0, (size_t)(hc * hd) * sizeof(float));
    for (int64_t p = 0; p < n_pos; p++) {
        const float *vp = kv_row(a, a->v_cache, a->v_scale, g, p, row);   /* vp[head_dim] */
        for (int64_t h = 0; h < hc; h++) {
            float w = scores[h * n_pos + p];
            float *ah = acc + h * hd;
            for (int64_t d = 0; d < hd; d++) ah[d] += w * vp[d];
        }
    }
    memcpy(a->out + i * a->out_stride + h0 * hd, acc, (size_t)(hc * hd) * sizeof(float));
}

void slm_attend_generic(const slm_attn_args *a, int64_t i0, int64_t r, int64_t g, int64_t h0,
                        int64_t hc, float *scratch) {
    for (int64_t i = i0; i < i0 + r; i++) attend_row(a, i, g, h0, hc, scratch);
}

typedef struct {
    slm_attn_args a;
    const float *k_new, *v_new;   /* [m, n_kv_heads, head_dim], copied into the caches */
    float *k_dst, *v_dst;         /* = k_cache, v_cache, writable */
    int64_t m;
    int64_t group;          /* query heads per KV head */
    int64_t n_split;        /* slices each group's query heads are cut into */
    atomic_int failed;      /* set when a task could not get scratch memory */
} attn_ctx;

/* Copy the new K/V rows of KV heads [g0, g1) into the caches at start_pos.. */
static void attn_store_kv(void *vctx, int64_t g0, int64_t g1) {
    attn_ctx *c = vctx;
    int64_t hd = c->a.head_dim, nkv = c->a.n_kv_heads;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t i = 0; i < c->m; i++) {
            const float *ks = c->k_new + (i * nkv + g) * hd;   /* ks[head_dim] */
            const float *vs = c->v_new + (i * nkv + g) * hd;   /* vs[head_dim] */
            float *kd = c->k_dst + (g * c->a.max_seq + c->a.start_pos + i) * hd;   /* kd[head_dim] */
            float *vd = c->v_dst + (g * c->a.max_seq + c->a.start_pos + i) * hd;   /* vd[head_dim] */
            /* memmove: a caller may already have written k_new straight into the cache */
            if (kd != ks) memmove(kd, ks, (size_t)hd * sizeof(float));
            if (vd != vs) memmove(vd, vs, (size_t)hd * sizeof(float));
        }
}

#define ROWS_PER_TASK 16   /* query rows per task: the SIMD kernel shares each key over them */

/* Task t: block of rows (the longest, latest blocks first: better balance when a thread takes
 * the last tasks), KV head, slice of its query heads. */
static void attn_tasks(void *vctx, int64_t t0, int64_t t1) {
    attn_ctx *c = vctx;
    const slm_kernels *kt = slm_kernels_get();
    int64_t group = c->group, n_ctx = c->a.start_pos + c->m;
    int64_t hc_max = (group + c->n_split - 1) / c->n_split;   /* most heads in one slice */
    float *scratch = malloc(slm_attend_scratch(ROWS_PER_TASK, hc_max, n_ctx, c->a.head_dim) *
                            sizeof(float));
    if (!scratch) { atomic_store(&c->failed, 1); return; }
    int64_t per_block = c->a.n_kv_heads * c->n_split;
    int64_t blocks = (c->m + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    for (int64_t t = t0; t < t1; t++) {
        int64_t i0 = (blocks - 1 - t / per_block) * ROWS_PER_TASK;
        int64_t r = c->m - i0 < ROWS_PER_TASK ? c->m - i0 : ROWS_PER_TASK;
        int64_t g = (t % per_block) / c->n_split, sl = t % c->n_split;
        int64_t h0 = g * group + sl * group / c->n_split;         /* first query head */
        int64_t hc = g * group + (sl + 1) * group / c->n_split - h0;   /* heads in slice */
        kt->attend(&c->a, i0, r, g, h0, hc, scratch);
    }
    free(scratch);
}

int slm_attention(slm_pool *pool, const float *q, const float *k_new, const float *v_new,
                  float *k_cache, float *v_cache, float *out,
                  int64_t m, int64_t start_pos, int64_t max_seq,
                  int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
    if (m < 0 || start_pos < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return SLM_E_SHAPE;
    if (n_heads % n_kv_heads != 0 || start_pos + m > max_seq) return SLM_E_SHAPE;
    if (m == 0) return SLM_OK;

    attn_ctx c = {
        .a = { .q = q, .q_stride = n_heads * head_dim, .kv_type = SLM_F32,
               .k_cache = k_cache, .v_cache = v_cache,
               .out = out, .out_stride = n_heads * head_dim, .start_pos = start_pos,
               .max_seq = max_seq, .n_heads = n_heads, .n_kv_heads = n_kv_heads,
               .head_dim = head_dim, .scale = (float)(1.0 / sqrt((double)head_dim)) },
        .k_new = k_new, .v_new = v_new, .k_dst = k_cache, .v_dst = v_cache,
        .m = m, .group = n_heads / n_kv_heads,
    };
    atomic_init(&c.failed, 0);

    /* all new rows must be in the cache before any row attends to them */
    slm_parallel_for(pool, n_kv_heads, attn_store_kv, &c);

    /* Few (row block, KV head) pairs (decode) would leave threads idle: then cut each group's
     * query heads into slices, aiming at two tasks per thread. */
    int64_t n_threads = slm_pool_size(pool);
    int64_t pairs = (m + ROWS_PER_TASK - 1) / ROWS_PER_TASK * n_kv_heads;
    int64_t split = (2 * n_threads + pairs - 1) / pairs;
    c.n_split = split < 1 ? 1 : split > c.group ? c.group : split;

    slm_parallel_for(pool, pairs * c.n_split, attn_tasks, &c);
    return atomic_load(&c.failed) ? SLM_E_NOMEM : SLM_OK;
}
