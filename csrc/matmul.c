/* matmul.c - slm_matmul (y = x @ W^T): the plain-C reference kernels, activation buffers and the
 * driver.
 *
 * The driver quantises each activation row once (for quantised W), then splits the output into
 * tasks of whole weight-row groups (and groups of activation rows when n alone is too small to
 * keep every thread busy) and runs them on the pool. The *_generic kernels below are the
 * reference every SIMD variant is tested against: simple loops, no cleverness.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

/* ---- reference kernels ------------------------------------------------------------------- */

/* d = amax / 32767 and q = round-half-even(x / d). x * (1/d) is one rounding in every variant
 * (no fused step a compiler could form differently) and nearbyintf rounds like the SIMD round
 * instructions, so all variants produce the same bits. amax is the largest |x| bit pattern, an
 * integer max in which NaN > inf > every number, so that a block holding NaN or inf gets d = NaN
 * (and q = 0): every output it meets is NaN, as in float arithmetic, and the forward pass's
 * non-finite check sees it (fmaxf would skip a NaN and give finite, wrong outputs). A block whose
 * d is below FLT_MIN (amax < ~3.9e-34) has no finite 1/d and is quantised as zeros. */
static void quantize_act_generic(const float *x, int16_t *q, float *d, float *s, int64_t k) {
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        float v[QK];                                  /* [32] block, zero-padded past k */
        for (int j = 0; j < QK; j++) v[j] = b * QK + j < k ? x[b * QK + j] : 0.0f;
        uint32_t abits = 0;
        for (int j = 0; j < QK; j++) {
            uint32_t u;
            memcpy(&u, &v[j], sizeof u);
            u &= 0x7fffffffu;
            abits = u > abits ? u : abits;
        }
        float amax;
        memcpy(&amax, &abits, sizeof amax);
        const int finite = amax <= FLT_MAX;              /* false for NaN and inf */
        float db = amax / (float)QK_ACT_MAX;
        const int ok = finite && db >= FLT_MIN;           /* and 1/db finite */
        db = !finite ? NAN : ok ? db : 0.0f;
        const float id = ok ? 1.0f / db : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            float t = ok ? nearbyintf(v[j] * id) : 0.0f;
            int qi = t > QK_ACT_MAX ? QK_ACT_MAX : t < -QK_ACT_MAX ? -QK_ACT_MAX : (int)t;
            q[b * QK + j] = (int16_t)qi;
            sum += qi;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

static void quantize_act8_generic(const float *x, int8_t *q8, float *d8, float *s8,
                                  int32_t *q8sum, int64_t k) {
    static const int order[8] = ACT8_ORDER;
    /* |q| <= 32767 maps onto |q8| <= 127 */
    const float to8 = 127.0f / (float)QK_ACT_MAX, scale8 = (float)QK_ACT_MAX / 127.0f;
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        int16_t q[QK];                                /* [32] the int16 block */
        float d, s;
        quantize_act_generic(x + b * QK, q, &d, &s, k - b * QK < QK ? k - b * QK : QK);
        int sum = 0;
        for (int u = 0; u < QK; u++) {
            int v = (int)nearbyintf((float)q[u / 8 * 8 + order[u % 8]] * to8);
            q8[b * QK + u] = (int8_t)v;
            sum += v;
        }
        d8[b] = d * scale8;
        s8[b] = d8[b] * (float)sum;
        q8sum[b] = sum;
    }
}

static float dot_f32_generic(const float *w, const float *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; j++) sum += w[j] * x[j];
    return sum;
}

static float dot_f16_generic(const uint16_t *w, const float *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; j++) sum += slm_fp16_to_fp32(w[j]) * x[j];
    return sum;
}

static float dot_bf16_generic(const uint16_t *w, const float *x, int64_t k) {
    float sum = 0.0f;
    for (int64_t j = 0; j < k; j++) sum += slm_bf16_to_fp32(w[j]) * x[j];
    return sum;
}

/* Q4 value j of a block: low nibbles hold elements 0..15, high nibbles 16..31. */
#define NIBBLE(qs, j) ((j) < QK / 2 ? (qs)[j] & 15 : (qs)[(j) - QK / 2] >> 4)

/* Block b of one weight row times block b of activation row i: integer sums, then scaled. */
static float block_q8_0_generic(const block_q8_0 *w, const slm_act *x, int64_t i, int64_t b) {
    const int16_t *q = x->q + (i * x->nb + b) * QK;     /* [32] */
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += w->qs[j] * q[j];
    return slm_fp16_to_fp32(w->d) * x->d[i * x->nb + b] * (float)isum;
}

/* Nibble dot of a Q4 block with int16 values q[32] (elements j and j + 16 share byte j): one
 * loop without branches, which compilers vectorise for the CPU at hand (NEON too); written
 * as NIBBLE(qs, j) * q[j] it ran ~8x slower than Q8_0. */
static int isum_q4(const uint8_t *qs, const int16_t *q) {
    int isum = 0;
    for (int j = 0; j < QK / 2; j++) isum += (qs[j] & 15) * q[j] + (qs[j] >> 4) * q[j + QK / 2];
    return isum;
}

static float block_q4_0_generic(const block_q4_0 *w, const slm_act *x, int64_t i, int64_t b) {
    const int16_t *q = x->q + (i * x->nb + b) * QK;     /* [32] */
    int sum = 0;
    for (int j = 0; j < QK; j++) sum += q[j];
    int isum = isum_q4(w->qs, q) - 8 * sum;             /* sum_j (n_j - 8) * q_j */
    return slm_fp16_to_fp32(w->d) * x->d[i * x->nb + b] * (float)isum;
}

static float block_q4_1_generic(const block_q4_1 *w, const slm_act *x, int64_t i, int64_t b) {
    const int16_t *q = x->q + (i * x->nb + b) * QK;     /* [32] */
    int isum = isum_q4(w->qs, q);
    /* sum_j (d*q_j + m) * x_j = d*dx*isum + m*s */
    return slm_fp16_to_fp32(w->d) * x->d[i * x->nb + b] * (float)isum +
           slm_fp16_to_fp32(w->m) * x->s[i * x->nb + b];
}

/* The same blocks against int8 activation blocks (slm_act's q8, values in ACT8_ORDER). */
static int act8_value(const slm_act *x, int64_t i, int64_t b, int j) {
    static const int slot[8] = ACT8_SLOT;
    return x->q8[(i * x->nb + b) * QK + j / 8 * 8 + slot[j % 8]];
}

static float block_q8_0_act8_generic(const block_q8_0 *w, const slm_act *x, int64_t i, int64_t b) {
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += w->qs[j] * act8_value(x, i, b, j);
    return slm_fp16_to_fp32(w->d) * x->d8[i * x->nb + b] * (float)isum;
}

static int isum_q4_act8(const uint8_t *qs, const slm_act *x, int64_t i, int64_t b) {
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += NIBBLE(qs, j) * act8_value(x, i, b, j);
    return isum;
}

static float block_q4_0_act8_generic(const block_q4_0 *w, const slm_act *x, int64_t i, int64_t b) {
    /* sum_j d*(n_j - 8) * d8*q_j = d*d8*(isum - 8*sum(q)), in integers as the SIMD kernels */
    int isum = isum_q4_act8(w->qs, x, i, b) - 8 * x->q8sum[i * x->nb + b];
    return slm_fp16_to_fp32(w->d) * x->d8[i * x->nb + b] * (float)isum;
}

static float block_q4_1_act8_generic(const block_q4_1 *w, const slm_act *x, int64_t i, int64_t b) {
    return slm_fp16_to_fp32(w->d) * x->d8[i * x->nb + b] * (float)isum_q4_act8(w->qs, x, i, b) +
           slm_fp16_to_fp32(w->m) * x->s8[i * x->nb + b];
}

/* Dots of one weight row with activation row i of x, block by block. */
#define DOT_QUANT_GENERIC(name, block_t)                                                       \
    static float dot_##name##_generic(const block_t *w, const slm_act *x, int64_t i) {         \
        float sum = 0.0f;                                                                      \
        for (int64_t b = 0; b < x->nb; b++) sum += block_##name##_generic(&w[b], x, i, b);     \
        return sum;                                                                            \
    }
DOT_QUANT_GENERIC(q8_0, block_q8_0)
DOT_QUANT_GENERIC(q4_0, block_q4_0)
DOT_QUANT_GENERIC(q4_1, block_q4_1)

/* The same dots for row r of a repacked group (w: the group's first block): each block is
 * unpacked to the base layout first, so the sums are those of the base type, bit for bit.
 * They read the int8 activation blocks when x has them. */
#define DOT_X8_GENERIC(name, block_t, xtype, act8_block)                                       \
    static float dot_##name##x8_generic(const uint8_t *w, int r, const slm_act *x, int64_t i) { \
        float sum = 0.0f;                                                                      \
        for (int64_t b = 0; b < x->nb; b++) {                                                  \
            block_t blk;                                                                       \
            slm_x8_unpack(xtype, w + (size_t)b * 8 * sizeof(block_t), r, &blk);                \
            sum += x->q8 ? act8_block(&blk, x, i, b) : block_##name##_generic(&blk, x, i, b);  \
        }                                                                                      \
        return sum;                                                                            \
    }
DOT_X8_GENERIC(q8_0, block_q8_0, SLM_Q8_0_X8, block_q8_0_act8_generic)
DOT_X8_GENERIC(q4_0, block_q4_0, SLM_Q4_0_X8, block_q4_0_act8_generic)
DOT_X8_GENERIC(q4_1, block_q4_1, SLM_Q4_1_X8, block_q4_1_act8_generic)

#define STORE(y, v, acc) ((acc) ? (*(y) += (v)) : (*(y) = (v)))

#define GEMM_FLOAT_GENERIC(name, wtype_t)                                                      \
    static void gemm_##name##_generic(const void *w, size_t ws, const slm_act *x, int64_t i0,  \
                                      float *y, size_t ys, int64_t m, int64_t n, int acc) {    \
        for (int64_t i = 0; i < m; i++)                                                        \
            for (int64_t j = 0; j < n; j++)                                                    \
                STORE(&y[i * ys + j], dot_##name##_generic(                                    \
                          (const wtype_t *)((const uint8_t *)w + j * ws),                      \
                          x->f + (i0 + i) * x->k, x->k), acc);                                 \
    }
#define GEMM_QUANT_GENERIC(name, block_t)                                                      \
    static void gemm_##name##_generic(const void *w, size_t ws, const slm_act *x, int64_t i0,  \
                                      float *y, size_t ys, int64_t m, int64_t n, int acc) {    \
        for (int64_t i = 0; i < m; i++)                                                        \
            for (int64_t j = 0; j < n; j++)                                                    \
                STORE(&y[i * ys + j], dot_##name##_generic(                                    \
                          (const block_t *)((const uint8_t *)w + j * ws), x, i0 + i), acc);    \
    }
/* Repacked weights: w starts at a group (rows 8g ..), row j is row j % 8 of group j / 8. */
#define GEMM_X8_GENERIC(name)                                                                  \
    static void gemm_##name##x8_generic(const void *w, size_t ws, const slm_act *x, int64_t i0, \
                                        float *y, size_t ys, int64_t m, int64_t n, int acc) {  \
        for (int64_t i = 0; i < m; i++)                                                        \
            for (int64_t j = 0; j < n; j++)                                                    \
                STORE(&y[i * ys + j], dot_##name##x8_generic(                                  \
                          (const uint8_t *)w + (size_t)(j / 8) * 8 * ws, (int)(j % 8), x,      \
                          i0 + i), acc);                                                       \
    }
GEMM_FLOAT_GENERIC(f32, float)
GEMM_FLOAT_GENERIC(f16, uint16_t)
GEMM_FLOAT_GENERIC(bf16, uint16_t)
GEMM_QUANT_GENERIC(q8_0, block_q8_0)
GEMM_QUANT_GENERIC(q4_0, block_q4_0)
GEMM_QUANT_GENERIC(q4_1, block_q4_1)
GEMM_X8_GENERIC(q8_0)
GEMM_X8_GENERIC(q4_0)
GEMM_X8_GENERIC(q4_1)

/* ---- probes (plain C; the compiler may vectorise them) -------------------------------------- */

static uint64_t probe_read_generic(const void *p, size_t bytes) {
    const uint64_t *v = p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < bytes / 8; i += 4) { a ^= v[i]; b ^= v[i + 1]; c ^= v[i + 2]; d ^= v[i + 3]; }
    return a ^ b ^ c ^ d;
}

static int64_t probe_int8_generic(int64_t iters) {
    uint8_t w[QK];                                /* [32] */
    int8_t x[PROBE_INT8_DOTS][QK];                /* [8][32] */
    int32_t acc[PROBE_INT8_DOTS] = {0};
    for (int j = 0; j < QK; j++) {
        w[j] = (uint8_t)(j & 15);
        for (int u = 0; u < PROBE_INT8_DOTS; u++) x[u][j] = (int8_t)(j - u);
    }
    for (int64_t it = 0; it < iters; it++) {
        __asm__ volatile("" : : "r"(x) : "memory");       /* x may have changed: no hoisting */
        for (int u = 0; u < PROBE_INT8_DOTS; u++)
            for (int j = 0; j < QK; j++) acc[u] += w[j] * x[u][j];
    }
    int64_t s = 0;
    for (int u = 0; u < PROBE_INT8_DOTS; u++) s += acc[u];
    return s;
}

const slm_kernels slm_kernels_generic = {
    .name = "generic",
    .repack = 0,          /* a row at a time: the stored layout is faster here */
    .quantize_act = quantize_act_generic, .quantize_act8 = quantize_act8_generic,
    .gemm_f32 = gemm_f32_generic, .gemm_f16 = gemm_f16_generic, .gemm_bf16 = gemm_bf16_generic,
    .gemm_q8_0 = gemm_q8_0_generic, .gemm_q4_0 = gemm_q4_0_generic, .gemm_q4_1 = gemm_q4_1_generic,
    .gemm_q8_0x8 = gemm_q8_0x8_generic, .gemm_q4_0x8 = gemm_q4_0x8_generic,
    .gemm_q4_1x8 = gemm_q4_1x8_generic,
    .attend = slm_attend_generic, .silu_mul = slm_silu_mul_generic,
    .probe_read = probe_read_generic, .probe_int8 = probe_int8_generic,
};

slm_gemm_fn slm_gemm_for(const slm_kernels *kt, int wtype) {
    switch (wtype) {
    case SLM_F32:  return kt->gemm_f32;
    case SLM_F16:  return kt->gemm_f16;
    case SLM_BF16: return kt->gemm_bf16;
    case SLM_Q8_0: return kt->gemm_q8_0;
    case SLM_Q4_0: return kt->gemm_q4_0;
    case SLM_Q4_1: return kt->gemm_q4_1;
    case SLM_Q8_0_X8: return kt->gemm_q8_0x8;
    case SLM_Q4_0_X8: return kt->gemm_q4_0x8;
    case SLM_Q4_1_X8: return kt->gemm_q4_1x8;
    default:       return NULL;
    }
}

/* ---- activation buffers ------------------------------------------------------------------ */

int slm_act_buf_reserve(slm_act_buf *buf, int64_t rows, int64_t k) {
    if (rows <= buf->rows && k <= buf->k) return SLM_OK;
    int64_t r = rows > buf->rows ? rows : buf->rows, kk = k > buf->k ? k : buf->k;
    int64_t nbb = (kk + QK - 1) / QK, r8 = (r + 7) / 8 * 8;
    slm_act_buf_free(buf);
    size_t qbytes = (size_t)(r8 * nbb) * QK * sizeof(int16_t);  /* a multiple of 64 */
    size_t dbytes = (size_t)(r8 * nbb) * sizeof(float);          /* a multiple of 32 */
    buf->f = malloc((size_t)(r * kk) * sizeof(float));
    buf->q = aligned_alloc(64, qbytes);
    buf->d = malloc(dbytes);
    buf->s = malloc(dbytes);
    buf->qi = aligned_alloc(64, qbytes);
    buf->di = aligned_alloc(64, (dbytes + 63) / 64 * 64);
    buf->si = aligned_alloc(64, (dbytes + 63) / 64 * 64);
    buf->q8 = aligned_alloc(64, qbytes / 2);
    buf->d8 = malloc(dbytes);
    buf->s8 = malloc(dbytes);
    buf->q8sum = malloc(dbytes);
    if (!buf->f || !buf->q || !buf->d || !buf->s || !buf->qi || !buf->di || !buf->si ||
        !buf->q8 || !buf->d8 || !buf->s8 || !buf->q8sum) {
        slm_act_buf_free(buf);
        return SLM_E_NOMEM;
    }
    buf->rows = r;
    buf->k = kk;
    buf->nb = nbb;
    return SLM_OK;
}

void slm_act_buf_free(slm_act_buf *buf) {
    free(buf->f);
    free(buf->q);
    free(buf->d);
    free(buf->s);
    free(buf->qi);
    free(buf->di);
    free(buf->si);
    free(buf->q8);
    free(buf->d8);
    free(buf->s8);
    free(buf->q8sum);
    memset(buf, 0, sizeof *buf);
}

void slm_act_quantize_rows(const slm_kernels *kt, const float *src, slm_act_buf *buf, int64_t k,
                           int64_t r0, int64_t r1) {
    int64_t nb = (k + QK - 1) / QK;
    for (int64_t r = r0; r < r1; r++)
        kt->quantize_act(src + r * k, buf->q + r * nb * QK, buf->d + r * nb, buf->s + r * nb, k);
}

void slm_act_quantize8_rows(const slm_kernels *kt, const float *src, slm_act_buf *buf, int64_t k,
                            int64_t r0, int64_t r1) {
    int64_t nb = (k + QK - 1) / QK;
    for (int64_t r = r0; r < r1; r++)
        kt->quantize_act8(src + r * k, buf->q8 + r * nb * QK, buf->d8 + r * nb, buf->s8 + r * nb,
                          buf->q8sum + r * nb, k);
}

void slm_act_interleave(slm_act_buf *buf, int64_t k, int64_t m, int64_t g0, int64_t g1) {
    int64_t nb = (k + QK - 1) / QK;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t b = 0; b < nb; b++) {
            int32_t *qi = buf->qi + (g * nb + b) * 128;     /* [16 pairs][8 rows] */
            float *di = buf->di + (g * nb + b) * 8, *si = buf->si + (g * nb + b) * 8;   /* [8] */
            for (int l = 0; l < 8; l++) {
                int64_t row = g * 8 + l;
                if (row >= m) {
                    for (int e = 0; e < 16; e++) qi[e * 8 + l] = 0;
                    di[l] = si[l] = 0.0f;
                    continue;
                }
                const int16_t *q = buf->q + (row * nb + b) * QK;   /* [32] */
                for (int e = 0; e < 16; e++) {
                    int32_t pair;
                    memcpy(&pair, q + 2 * e, sizeof pair);
                    qi[e * 8 + l] = pair;
                }
                di[l] = buf->d[row * nb + b];
                si[l] = buf->s[row * nb + b];
            }
        }
}

/* ---- driver ------------------------------------------------------------------------------ */

#define N_UNIT 16   /* weight rows per task unit: a multiple of every SIMD tile width */
#define M_UNIT 64   /* activation rows per task unit, when rows of x are split too (multiple of 8) */

typedef struct {
    const slm_kernels *kt;
    slm_gemm_fn gemm;
    const uint8_t *w;     /* [n, ws] weights */
    size_t ws;
    const float *xf;      /* [m, k] float activations */
    slm_act x;            /* what the gemm reads: xf, or its quantised copy in buf */
    slm_act_buf *buf;
    float *y;             /* [m, n] output */
    int64_t m, n, k;
    int act8;             /* also int8 activation blocks (repacked weights) */
    int interleave;       /* also row-interleaved blocks (many rows, weights as stored) */
    int64_t n_units;      /* tasks along n (N_UNIT weight rows each) */
    int64_t m_unit;       /* activation rows per task: M_UNIT, or m when rows are not split */
} matmul_ctx;

/* Groups of 8 rows g0 .. g1-1: quantised to int8 blocks (act8: the repacked kernels then read
 * those only) or to int16 ones, then interleaved (when the gemm reads that). */
static void quantize_rows_task(void *p, int64_t g0, int64_t g1) {
    matmul_ctx *c = p;
    int64_t r1 = g1 * 8 < c->m ? g1 * 8 : c->m;
    if (c->act8) {
        slm_act_quantize8_rows(c->kt, c->xf, c->buf, c->k, g0 * 8, r1);
        return;
    }
    slm_act_quantize_rows(c->kt, c->xf, c->buf, c->k, g0 * 8, r1);
    if (c->interleave) slm_act_interleave(c->buf, c->k, c->m, g0, g1);
}

/* Task t covers activation rows of unit t / n_units and weight rows of unit t % n_units;
 * a contiguous run of tasks is merged into as few gemm calls as possible. */
static void gemm_task(void *p, int64_t t0, int64_t t1) {
    matmul_ctx *c = p;
    while (t0 < t1) {
        int64_t mu = t0 / c->n_units, nu0 = t0 % c->n_units;
        int64_t nu1 = c->n_units;                    /* end of this run of n units */
        if ((mu + 1) * c->n_units > t1) nu1 = t1 - mu * c->n_units;
        int64_t i0 = mu * c->m_unit, i1 = i0 + c->m_unit < c->m ? i0 + c->m_unit : c->m;
        int64_t j0 = nu0 * N_UNIT, j1 = nu1 * N_UNIT < c->n ? nu1 * N_UNIT : c->n;
        c->gemm(c->w + j0 * c->ws, c->ws, &c->x, i0, c->y + i0 * c->n + j0, (size_t)c->n,
                i1 - i0, j1 - j0, 0);
        t0 += nu1 - nu0;
    }
}

int slm_matmul(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
               int64_t m, int64_t n, int64_t k) {
    return slm_matmul_act(pool, wtype, w, x, y, m, n, k, 16);
}

int slm_matmul_act(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
                   int64_t m, int64_t n, int64_t k, int act_bits) {
    if (m < 0 || n < 0 || k < 0) return SLM_E_SHAPE;
    if ((act_bits != 16 && act_bits != 8) ||
        (act_bits == 8 && !slm_x8_base(wtype))) return SLM_E_TYPE;
    const slm_kernels *kt = slm_kernels_get();
    slm_gemm_fn gemm = slm_gemm_for(kt, wtype);
    if (!gemm) return SLM_E_TYPE;
    if (m == 0 || n == 0) return SLM_OK;

    matmul_ctx c = { .kt = kt, .gemm = gemm, .w = w, .ws = slm_row_size(wtype, k),
                     .xf = x, .y = y, .m = m, .n = n, .k = k, .act8 = act_bits == 8,
                     .interleave = m >= SLM_INTERLEAVE_ROWS && !slm_x8_base(wtype) };
    c.x.f = x;
    c.x.k = k;
    slm_act_buf buf = {0};                   /* its float rows stay unused: x is read directly */
    if (slm_is_quantized(wtype)) {
        if (slm_act_buf_reserve(&buf, m, k)) return SLM_E_NOMEM;
        c.buf = &buf;
        int64_t groups = (m + 7) / 8;
        if (groups > 1) slm_parallel_for(pool, groups, quantize_rows_task, &c);
        else quantize_rows_task(&c, 0, groups);
        c.x = slm_act_view(&buf, k, c.interleave, c.act8);
    }

    /* Split over n first (every thread streams its own weights); split over m as well only
     * when n gives fewer than ~4 units per thread. */
    int nt = slm_pool_size(pool);
    c.n_units = (n + N_UNIT - 1) / N_UNIT;
    c.m_unit = m;
    if (nt > 1 && c.n_units < 4 * nt && m > M_UNIT) c.m_unit = M_UNIT;
    int64_t m_units = (m + c.m_unit - 1) / c.m_unit;
    slm_parallel_for(pool, m_units * c.n_units, gemm_task, &c);
    slm_act_buf_free(&buf);
    return SLM_OK;
}
