/* kernels.h - the table of kernels that dispatch.c picks from at run time, and the activation
 * rows they read.
 *
 * Every variant (generic C, AVX2, ...) fills one slm_kernels table. Callers only go through the
 * table, so a variant is a file of its own plus one line in dispatch.c.
 */
#ifndef SLMKIT_KERNELS_H
#define SLMKIT_KERNELS_H

#include "internal.h"
#include "blocks.h"

/* Activation rows as the gemm kernels read them. Float weights (F32/F16/BF16) read f; quantised
 * weights read int16 blocks: row i, block b is q[(i*nb + b)*32 .. +32] (64-byte aligned, tail of
 * the last block zero), x ~ d[i*nb + b] * q, and s[i*nb + b] = d * sum(q) (Q4_1 adds its
 * per-block minimum times the block's activation sum).
 *
 * Many-row gemms (prefill) may also read the same blocks interleaved by groups of 8 rows: for
 * group G (rows 8G .. 8G+7, missing rows zero), block b and pair e (values 2e, 2e+1) the 8 rows'
 * pairs are contiguous, qi[((G*nb + b)*16 + e)*8 + l] = row 8G+l's pair e as one int32, with
 * di/si[(G*nb + b)*8 + l] their scales and sums. One vector then holds one pair of 8 rows, so an
 * integer dot accumulates 8 rows at once and is converted and scaled once per block.
 *
 * Prefill may carry int8 blocks instead (q8: the int16 ones rounded again, see quantize_act8):
 * x ~ d8 * q8, s8 = d8 * sum(q8), q8sum = sum(q8), the 32 values of a block in the order
 * ACT8_ORDER, which is the byte order of 4 values of a row in a 32-byte step of repacked weights
 * (blocks.h), so that one broadcast of 4 activation bytes meets 4 values of 8 weight rows in one
 * int8 dot (vpdpbusd). The repacked kernels read q8 when it is there (and then never q); every
 * other kernel reads q. */
typedef struct {
    const float *f;       /* [m, k] float rows, or NULL */
    const int16_t *q;     /* [m, nb, 32] quantised rows, or NULL */
    const float *d, *s;   /* [m, nb] block scales and scaled sums */
    const int32_t *qi;    /* [ceil(m/8), nb, 16, 8] row-interleaved pairs, or NULL */
    const float *di, *si; /* [ceil(m/8), nb, 8] */
    const int8_t *q8;     /* [m, nb, 32] int8 rows in ACT8_ORDER, or NULL */
    const float *d8, *s8; /* [m, nb] */
    const int32_t *q8sum; /* [m, nb] */
    int64_t k, nb;        /* values per row, blocks per row = ceil(k / 32) */
} slm_act;

/* Position u of each 8 values of an int8 block holds value ACT8_ORDER[u] of those 8 (a masked
 * Q4 x8 load has row values 8t + {0, 4, 1, 5} in its low nibbles, 8t + {2, 6, 3, 7} in its high
 * ones); ACT8_SLOT is the inverse. */
#define ACT8_ORDER { 0, 4, 1, 5, 2, 6, 3, 7 }
#define ACT8_SLOT  { 0, 2, 4, 6, 1, 3, 5, 7 }

/* Quantise one activation row x[k] into q[nb*32], d[nb], s[nb]. Every variant must give
 * bit-identical results, so that SIMD and reference gemms see the same inputs. */
typedef void (*slm_quantize_act_fn)(const float *x, int16_t *q, float *d, float *s, int64_t k);

/* One activation row x[k] as int8 blocks q8[nb*32] (values in ACT8_ORDER), d8, s8, q8sum[nb]:
 * the int16 blocks (q, d) of quantize_act rounded again, q8 = round(q * 127 / 32767), d8 =
 * d * 32767 / 127, without storing q. Bit-identical in every variant, as above. */
typedef void (*slm_quantize_act8_fn)(const float *x, int8_t *q8, float *d8, float *s8,
                                     int32_t *q8sum, int64_t k);

/* Rows i0 .. i0+m-1 of x times weight rows 0 .. n-1:
 *   y[i*ys + j] = dot(x row i0+i, w row j)       (acc = 0)
 *   y[i*ys + j] += dot(x row i0+i, w row j)      (acc = 1)
 * w: n rows of ws bytes in the weight type; for repacked types (SLM_*_X8) w starts at a group
 * of 8 rows and ws is the base type's row size (a group is 8 * ws bytes). */
typedef void (*slm_gemm_fn)(const void *w, size_t ws, const slm_act *x, int64_t i0,
                            float *y, size_t ys, int64_t m, int64_t n, int acc);

/* Machine-limit probes (probe.c times them): read bytes (a multiple of 128) of p and return
 * something that depends on every byte; run iters rounds of PROBE_INT8_DOTS independent
 * u8 x s8 -> int32 dot steps of 32 bytes (maddubs + madd + add on AVX2) and return a value that
 * depends on all of them. */
#define PROBE_INT8_DOTS 8
typedef uint64_t (*slm_probe_read_fn)(const void *p, size_t bytes);
typedef int64_t (*slm_probe_int8_fn)(int64_t iters);

/* out[n] = silu(gate) * up (see slm_silu_mul). */
typedef void (*slm_silu_mul_fn)(const float *gate, const float *up, float *out, int64_t n);

/* Attention of a block of query rows and heads (see slm_attend_generic in internal.h). */
typedef void (*slm_attend_fn)(const slm_attn_args *a, int64_t i0, int64_t r, int64_t g,
                              int64_t h0, int64_t hc, float *scratch);

typedef struct slm_kernels {
    const char *name;
    int repack;           /* 1: the repacked weight layouts are this variant's fastest */
    slm_quantize_act_fn quantize_act;
    slm_quantize_act8_fn quantize_act8;
    slm_gemm_fn gemm_f32, gemm_f16, gemm_bf16, gemm_q8_0, gemm_q4_0, gemm_q4_1;
    slm_gemm_fn gemm_q8_0x8, gemm_q4_0x8, gemm_q4_1x8;       /* repacked weights */
    slm_attend_fn attend;
    slm_silu_mul_fn silu_mul;
    slm_probe_read_fn probe_read;
    slm_probe_int8_fn probe_int8;
} slm_kernels;

extern const slm_kernels slm_kernels_generic;    /* matmul.c */
void slm_silu_mul_generic(const float *gate, const float *up, float *out, int64_t n);  /* ops.c */
#ifdef SLMKIT_HAVE_AVX2_SOURCES
extern const slm_kernels slm_kernels_avx2;       /* matmul_avx2.c */
extern const slm_kernels slm_kernels_avx512vnni; /* matmul_avx512vnni.c */
void slm_attend_avx2(const slm_attn_args *a, int64_t i0, int64_t r, int64_t g, int64_t h0,
                     int64_t hc, float *scratch);  /* attention_avx2.c */
void slm_silu_mul_avx2(const float *gate, const float *up, float *out, int64_t n);   /* same */
#endif

/* The variant in use (dispatch.c); chosen on first call. */
const slm_kernels *slm_kernels_get(void);

/* The gemm of kt for a weight type, or NULL for an unsupported type. */
slm_gemm_fn slm_gemm_for(const slm_kernels *kt, int wtype);

static inline int slm_is_quantized(int wtype) {
    return wtype == SLM_Q8_0 || wtype == SLM_Q4_0 || wtype == SLM_Q4_1 || slm_x8_base(wtype);
}

/* ---- activation buffers ------------------------------------------------------------------ */

/* Room for `rows` activation rows of k values: float rows and their quantised blocks, plain
 * and row-interleaved (see slm_act). */
typedef struct {
    float *f;             /* [rows, k] */
    int16_t *q;           /* [rows, nb, 32], 64-byte aligned */
    float *d, *s;         /* [rows, nb] */
    int32_t *qi;          /* [ceil(rows/8), nb, 16, 8], 64-byte aligned */
    float *di, *si;       /* [ceil(rows/8), nb, 8], 32-byte aligned */
    int8_t *q8;           /* [rows, nb, 32] in ACT8_ORDER, 64-byte aligned */
    float *d8, *s8;       /* [rows, nb] */
    int32_t *q8sum;       /* [rows, nb] */
    int64_t rows, k, nb;
} slm_act_buf;

/* Grow buf to hold rows x k (keeps it when big enough). 0 or SLM_E_NOMEM. */
int  slm_act_buf_reserve(slm_act_buf *buf, int64_t rows, int64_t k);
void slm_act_buf_free(slm_act_buf *buf);

/* Quantise rows r0 .. r1-1 of src[rows, k] (buf->f or any other rows) into buf's blocks. */
void slm_act_quantize_rows(const slm_kernels *kt, const float *src, slm_act_buf *buf, int64_t k,
                           int64_t r0, int64_t r1);

/* The same rows as int8 blocks (q8, d8, s8, q8sum; see slm_act). */
void slm_act_quantize8_rows(const slm_kernels *kt, const float *src, slm_act_buf *buf, int64_t k,
                            int64_t r0, int64_t r1);

/* Interleave groups g0 .. g1-1 of the quantised rows of buf (m rows in all; see slm_act). */
void slm_act_interleave(slm_act_buf *buf, int64_t k, int64_t m, int64_t g0, int64_t g1);

/* The view of buf that a gemm reads, for rows of length k; `interleaved` when the groups were
 * made, `act8` when the int8 blocks were. */
static inline slm_act slm_act_view(const slm_act_buf *buf, int64_t k, int interleaved, int act8) {
    slm_act a = { buf->f, buf->q, buf->d, buf->s, interleaved ? buf->qi : NULL,
                  interleaved ? buf->di : NULL, interleaved ? buf->si : NULL,
                  act8 ? buf->q8 : NULL, act8 ? buf->d8 : NULL, act8 ? buf->s8 : NULL,
                  act8 ? buf->q8sum : NULL, k, (k + QK - 1) / QK };
    return a;
}

/* Rows from which a quantised gemm is worth the interleaved layout. */
#define SLM_INTERLEAVE_ROWS 8

#endif
