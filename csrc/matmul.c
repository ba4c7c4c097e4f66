/* matmul.c - slm_matmul (y = x @ W^T) driver and the plain-C reference kernels.
 *
 * The driver quantises each activation row once (for quantised W), then splits the output into
 * tasks of whole weight-row groups (and groups of activation rows when n alone is too small to
 * keep every thread busy) and runs them on the pool. The *_generic kernels below are the
 * reference every SIMD variant is tested against: simple loops, no cleverness.
 */
#include <math.h>
#include <stdlib.h>
#include "kernels.h"

/* ---- reference kernels ------------------------------------------------------------------- */

/* Activation quantisation, two levels (see block_q8x2). t = x / (amax/127) is rounded to qh;
 * t - qh is exact in float, and so is its product with 256, so ql = round(256 * (t - qh)) has no
 * rounding step that a compiler could fuse differently. nearbyintf rounds half to even, like the
 * SIMD round instructions, so all variants produce the same bits. */
static void quantize_act_generic(const float *x, block_q8x2 *y, int64_t k) {
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        float v[QK];                                  /* [32] block, zero-padded past k */
        for (int j = 0; j < QK; j++) v[j] = b * QK + j < k ? x[b * QK + j] : 0.0f;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            float t = v[j] * id, h = nearbyintf(t);
            int l = (int)nearbyintf((t - h) * 256.0f);
            l = l > 127 ? 127 : l < -127 ? -127 : l;  /* |t - h| <= 1/2: only +-128 clips */
            y[b].qh[j] = (int8_t)h;
            y[b].ql[j] = (int8_t)l;
            sum += 256 * (int)h + l;
        }
        y[b].d = d * (1.0f / 256.0f);
        y[b].s = y[b].d * (float)sum;
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

/* Integer dot of one weight block (32 values w[j], as ints) with a block_q8x2. */
#define DOT_Q8X2(wj, xb, isum)                                                                  \
    do {                                                                                        \
        int hi_ = 0, lo_ = 0;                                                                   \
        for (int j = 0; j < QK; j++) { hi_ += (wj) * (xb).qh[j]; lo_ += (wj) * (xb).ql[j]; }    \
        (isum) = 256 * hi_ + lo_;                                                               \
    } while (0)

/* Q4 value j of a block: low nibbles hold elements 0..15, high nibbles 16..31. */
#define NIBBLE(qs, j) ((j) < QK / 2 ? (qs)[j] & 15 : (qs)[(j) - QK / 2] >> 4)

static float dot_q8_0_generic(const block_q8_0 *w, const block_q8x2 *x, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int isum;
        DOT_Q8X2(w[b].qs[j], x[b], isum);
        sum += slm_fp16_to_fp32(w[b].d) * x[b].d * (float)isum;
    }
    return sum;
}

static float dot_q4_0_generic(const block_q4_0 *w, const block_q8x2 *x, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int isum;
        DOT_Q8X2(NIBBLE(w[b].qs, j), x[b], isum);
        /* sum_j d*(q_j - 8) * x_j = d*dx*isum - 8*d*s */
        float d = slm_fp16_to_fp32(w[b].d);
        sum += d * x[b].d * (float)isum + -8.0f * d * x[b].s;
    }
    return sum;
}

static float dot_q4_1_generic(const block_q4_1 *w, const block_q8x2 *x, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int isum;
        DOT_Q8X2(NIBBLE(w[b].qs, j), x[b], isum);
        /* sum_j (d*q_j + m) * x_j = d*dx*isum + m*s */
        sum += slm_fp16_to_fp32(w[b].d) * x[b].d * (float)isum + slm_fp16_to_fp32(w[b].m) * x[b].s;
    }
    return sum;
}

/* One gemm per weight type: every (i, j) pair through the dot above. */
#define GEMM_GENERIC(name, wtype_t, xtype_t, len)                                              \
    static void gemm_##name##_generic(const void *w, size_t ws, const void *x, size_t xs,     \
                                      float *y, size_t ys, int64_t m, int64_t n, int64_t k) { \
        for (int64_t i = 0; i < m; i++)                                                        \
            for (int64_t j = 0; j < n; j++)                                                    \
                y[i * ys + j] = dot_##name##_generic(                                          \
                    (const wtype_t *)((const uint8_t *)w + j * ws),                            \
                    (const xtype_t *)((const uint8_t *)x + i * xs), len);                      \
    }
GEMM_GENERIC(f32, float, float, k)
GEMM_GENERIC(f16, uint16_t, float, k)
GEMM_GENERIC(bf16, uint16_t, float, k)
GEMM_GENERIC(q8_0, block_q8_0, block_q8x2, (k + QK - 1) / QK)
GEMM_GENERIC(q4_0, block_q4_0, block_q8x2, (k + QK - 1) / QK)
GEMM_GENERIC(q4_1, block_q4_1, block_q8x2, (k + QK - 1) / QK)

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
    .quantize_act = quantize_act_generic,
    .gemm_f32 = gemm_f32_generic, .gemm_f16 = gemm_f16_generic, .gemm_bf16 = gemm_bf16_generic,
    .gemm_q8_0 = gemm_q8_0_generic, .gemm_q4_0 = gemm_q4_0_generic, .gemm_q4_1 = gemm_q4_1_generic,
    .probe_read = probe_read_generic, .probe_int8 = probe_int8_generic,
};

/* ---- driver ------------------------------------------------------------------------------ */

#define N_UNIT 8    /* weight rows per task unit: a multiple of every SIMD tile width */
#define M_UNIT 64   /* activation rows per task unit, when rows of x are split too */

typedef struct {
    const slm_kernels *kt;
    slm_gemm_fn gemm;
    const uint8_t *w;     /* [n, ws] weights */
    size_t ws;
    const uint8_t *x;     /* [m, xs] activations: float rows or quantised block_q8x2 rows */
    size_t xs;
    float *y;             /* [m, n] output */
    int64_t m, n, k;
    int64_t n_units;      /* tasks along n (N_UNIT weight rows each) */
    int64_t m_unit;       /* activation rows per task: M_UNIT, or m when rows are not split */
    const float *xf;      /* [m, k] float activations (for parallel quantisation) */
    block_q8x2 *xq;       /* [m, nb] quantised activations */
} matmul_ctx;

static void quantize_rows_task(void *p, int64_t r0, int64_t r1) {
    matmul_ctx *c = p;
    int64_t nb = (c->k + QK - 1) / QK;
    for (int64_t r = r0; r < r1; r++) c->kt->quantize_act(c->xf + r * c->k, c->xq + r * nb, c->k);
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
        c->gemm(c->w + j0 * c->ws, c->ws, c->x + i0 * c->xs, c->xs, c->y + i0 * c->n + j0,
                (size_t)c->n, i1 - i0, j1 - j0, c->k);
        t0 += nu1 - nu0;
    }
}

int slm_matmul(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
               int64_t m, int64_t n, int64_t k) {
    if (m < 0 || n < 0 || k < 0) return SLM_E_SHAPE;
    size_t ws = slm_row_size(wtype, k);
    const slm_kernels *kt = slm_kernels_get();
    slm_gemm_fn gemm;
    switch (wtype) {
    case SLM_F32:  gemm = kt->gemm_f32; break;
    case SLM_F16:  gemm = kt->gemm_f16; break;
    case SLM_BF16: gemm = kt->gemm_bf16; break;
    case SLM_Q8_0: gemm = kt->gemm_q8_0; break;
    case SLM_Q4_0: gemm = kt->gemm_q4_0; break;
    case SLM_Q4_1: gemm = kt->gemm_q4_1; break;
    default: return SLM_E_TYPE;
    }
    if (m == 0 || n == 0) return SLM_OK;

    matmul_ctx c = { .kt = kt, .gemm = gemm, .w = w, .ws = ws, .x = (const uint8_t *)x,
                     .xs = (size_t)k * sizeof(float), .y = y, .m = m, .n = n, .k = k, .xf = x };
    int quantised = wtype == SLM_Q8_0 || wtype == SLM_Q4_0 || wtype == SLM_Q4_1;
    if (quantised) {
        int64_t nb = (k + QK - 1) / QK;
        size_t bytes = (size_t)m * (size_t)nb * sizeof(block_q8x2);
        c.xq = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);     /* [m, nb] */
        if (!c.xq) return SLM_E_NOMEM;
        if (m >= 8) slm_parallel_for(pool, m, quantize_rows_task, &c);
        else quantize_rows_task(&c, 0, m);
        c.x = (const uint8_t *)c.xq;
        c.xs = (size_t)nb * sizeof(block_q8x2);
    }

    /* Split over n first (every thread streams its own weights); split over m as well only
     * when n gives fewer than ~4 units per thread. */
    int nt = slm_pool_size(pool);
    c.n_units = (n + N_UNIT - 1) / N_UNIT;
    c.m_unit = m;
    if (nt > 1 && c.n_units < 4 * nt && m > M_UNIT) c.m_unit = M_UNIT;
    int64_t m_units = (m + c.m_unit - 1) / c.m_unit;
    slm_parallel_for(pool, m_units * c.n_units, gemm_task, &c);
    free(c.xq);
    return SLM_OK;
}
