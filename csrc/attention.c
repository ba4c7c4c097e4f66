/* attention.c - rotary position embedding and causal grouped-query attention over a KV cache.
 *
 * RoPE angles are computed in double (pos * base^(-2j/head_dim) reaches thousands of radians,
 * where a float angle would already be off by ~1e-4) and only the final cos/sin are rounded
 * to float.
 *
 * Attention work is split into tasks of (query row, KV head, slice of that KV head's query
 * heads). A task walks the cached K and V rows once and uses each row for all of its query
 * heads, so K/V traffic is paid once per group instead of once per head. Tasks are spread over
 * the pool with slm_parallel_for.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* ---- RoPE ------------------------------------------------------------------------------------ */

/* cos/sin are computed for this many frequency pairs at a time, so any head_dim works with a
 * fixed stack buffer (slm_rope returns void and must not need the heap). */
#define ROPE_CHUNK 64

void slm_rope(float *x, const int32_t *pos, int64_t m, int64_t n_heads, int64_t head_dim,
              float base, int interleaved) {
    int64_t half = head_dim / 2;   /* number of rotated pairs; an odd last element is left as is */
    double log_base = log((double)base);
    for (int64_t i = 0; i < m; i++) {
        float *xr = x + i * n_heads * head_dim;   /* xr[n_heads, head_dim]: row i */
        double p = (double)pos[i];
        for (int64_t j0 = 0; j0 < half; j0 += ROPE_CHUNK) {
            int64_t nj = half - j0 < ROPE_CHUNK ? half - j0 : ROPE_CHUNK;
            float c[ROPE_CHUNK], s[ROPE_CHUNK];   /* c[nj], s[nj]: cos/sin of pairs j0.. */
            for (int64_t j = 0; j < nj; j++) {
                /* base^(-2j/head_dim) = exp(-2j/head_dim * ln base), all in double */
                double theta = p * exp(-2.0 * (double)(j0 + j) / (double)head_dim * log_base);
                c[j] = (float)cos(theta);
                s[j] = (float)sin(theta);
            }
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

typedef struct {
    const float *q;         /* q[m, n_heads, head_dim] */
    const float *k_cache;   /* k_cache[n_kv_heads, max_seq, head_dim] */
    const float *v_cache;   /* v_cache[n_kv_heads, max_seq, head_dim] */
    float *out;             /* out[m, n_heads, head_dim] */
    const float *k_new, *v_new;   /* [m, n_kv_heads, head_dim], only for the cache copy */
    float *k_dst, *v_dst;         /* = k_cache, v_cache, writable, only for the cache copy */
    int64_t m, start_pos, max_seq, n_heads, n_kv_heads, head_dim;
    int64_t group;          /* query heads per KV head */
    int64_t n_split;        /* slices each group's query heads are cut into */
    float scale;            /* 1/sqrt(head_dim) */
    atomic_int failed;      /* set when a task could not get scratch memory */
} attn_ctx;

/* Copy the new K/V rows of KV heads [g0, g1) into the caches at start_pos.. */
static void attn_store_kv(void *vctx, int64_t g0, int64_t g1) {
    attn_ctx *c = vctx;
    int64_t hd = c->head_dim;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t i = 0; i < c->m; i++) {
            const float *ks = c->k_new + (i * c->n_kv_heads + g) * hd;   /* ks[head_dim] */
            const float *vs = c->v_new + (i * c->n_kv_heads + g) * hd;   /* vs[head_dim] */
            float *kd = c->k_dst + (g * c->max_seq + c->start_pos + i) * hd;   /* kd[head_dim] */
            float *vd = c->v_dst + (g * c->max_seq + c->start_pos + i) * hd;   /* vd[head_dim] */
            /* memmove: a caller may already have written k_new straight into the cache */
            if (kd != ks) memmove(kd, ks, (size_t)hd * sizeof(float));
            if (vd != vs) memmove(vd, vs, (size_t)hd * sizeof(float));
        }
}

/* Row of the task list: rows are visited as 0, m-1, 1, m-2, ... so that any contiguous run of
 * tasks (what one thread gets from slm_parallel_for) mixes short and long causal rows. */
static inline int64_t balanced_row(int64_t r, int64_t m) {
    return (r & 1) ? m - 1 - r / 2 : r / 2;
}

static void attn_tasks(void *vctx, int64_t t0, int64_t t1) {
    attn_ctx *c = vctx;
    int64_t hd = c->head_dim, group = c->group, n_ctx = c->start_pos + c->m;
    int64_t hc_max = (group + c->n_split - 1) / c->n_split;   /* most heads in one slice */
    /* scratch: scores[hc_max, n_ctx] then acc[hc_max, head_dim] */
    float *scratch = malloc((size_t)(hc_max * (n_ctx + hd)) * sizeof(float));
    if (!scratch) { atomic_store(&c->failed, 1); return; }
    float *scores = scratch;                   /* scores[hc, n_pos]: row stride n_ctx */
    float *acc = scratch + hc_max * n_ctx;     /* acc[hc, head_dim] */

    int64_t per_row = c->n_kv_heads * c->n_split;
    for (int64_t t = t0; t < t1; t++) {
        int64_t i = balanced_row(t / per_row, c->m);
        int64_t g = (t % per_row) / c->n_split, sl = t % c->n_split;
        int64_t h0 = g * group + sl * group / c->n_split;         /* first query head */
        int64_t hc = g * group + (sl + 1) * group / c->n_split - h0;   /* heads in slice */
        int64_t n_pos = c->start_pos + i + 1;                     /* causal: 0 .. start_pos+i */
        const float *qi = c->q + (i * c->n_heads + h0) * hd;      /* qi[hc, head_dim] */
        const float *kg = c->k_cache + g * c->max_seq * hd;       /* kg[max_seq, head_dim] */
        const float *vg = c->v_cache + g * c->max_seq * hd;       /* vg[max_seq, head_dim] */

        /* scores: one pass over K, each row used by every head of the slice */
        for (int64_t p = 0; p < n_pos; p++)
            for (int64_t h = 0; h < hc; h++)
                scores[h * n_ctx + p] = dot(qi + h * hd, kg + p * hd, hd) * c->scale;

        /* softmax per head, float32 with the max subtracted */
        for (int64_t h = 0; h < hc; h++) slm_softmax(scores + h * n_ctx, 1, n_pos);

        /* weighted sum of V: one pass over V, accumulated in scratch so out may alias q */
        memset(acc, 0, (size_t)(hc * hd) * sizeof(float));
        for (int64_t p = 0; p < n_pos; p++) {
            const float *vp = vg + p * hd;   /* vp[head_dim] */
            for (int64_t h = 0; h < hc; h++) {
                float w = scores[h * n_ctx + p];
                float *ah = acc + h * hd;
                for (int64_t d = 0; d < hd; d++) ah[d] += w * vp[d];
            }
        }
        memcpy(c->out + (i * c->n_heads + h0) * hd, acc, (size_t)(hc * hd) * sizeof(float));
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
        .q = q, .k_cache = k_cache, .v_cache = v_cache, .out = out,
        .k_new = k_new, .v_new = v_new, .k_dst = k_cache, .v_dst = v_cache,
        .m = m, .start_pos = start_pos, .max_seq = max_seq, .n_heads = n_heads,
        .n_kv_heads = n_kv_heads, .head_dim = head_dim, .group = n_heads / n_kv_heads,
        .scale = (float)(1.0 / sqrt((double)head_dim)),
    };
    atomic_init(&c.failed, 0);

    /* all new rows must be in the cache before any row attends to them */
    slm_parallel_for(pool, n_kv_heads, attn_store_kv, &c);

    /* Few (row, KV head) pairs (decode) would leave threads idle: then cut each group's query
     * heads into slices, aiming at two tasks per thread. */
    int64_t n_threads = slm_pool_size(pool);
    int64_t pairs = m * n_kv_heads;
    int64_t split = (2 * n_threads + pairs - 1) / pairs;
    c.n_split = split < 1 ? 1 : split > c.group ? c.group : split;

    slm_parallel_for(pool, pairs * c.n_split, attn_tasks, &c);
    return atomic_load(&c.failed) ? SLM_E_NOMEM : SLM_OK;
}
