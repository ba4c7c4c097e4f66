/* matmul_avx2.c - AVX2 + FMA + F16C matmul kernels (x86-64 only; compiled with -mavx2 -mfma
 * -mf16c, chosen at run time by dispatch.c).
 *
 * Each gemm walks the output in register tiles of MR activation rows x NR weight rows: a weight
 * block is loaded (and unpacked) once per tile and reused for MR rows of x, an activation block
 * once and reused for NR weight rows. Decode (m = 1) uses 1 x 4 tiles, which keeps four
 * independent weight streams in flight; prefill uses PF_MR x PF_NR tiles. Weight rows are
 * visited in panels of PANEL rows so a panel stays in L1/L2 while every tile of x passes over it.
 *
 * Integer dots: weights are widened to int16 (Q4_0 as q - 8, so no offset term is needed; Q4_1
 * as q, its minimum applied per block through s = d_x * sum(q_x); Q8_0 sign-extended) and
 * multiplied with the int16 activations by vpmaddwd: two per block of 32, then one add, one
 * conversion and one FMA with the product of the two block scales.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "avx2_util.h"
#include "kernels.h"

#ifndef PF_MR
#define PF_MR 4     /* prefill tile: activation rows (1..6) */
#endif
#ifndef PF_NR
#define PF_NR 2     /* prefill tile: weight rows (1..4) */
#endif
#ifndef PANEL
#define PANEL 16    /* weight rows per panel: a multiple of every NR below */
#endif
#ifndef PF_TILES
#define PF_TILES 1     /* decode prefetches the same block of the rows this many tiles ahead */
#endif
#define MR_MAX 6
#define NR_MAX 4

AI void store_out(float *y, float v, int acc) { *y = acc ? *y + v : v; }

/* ---- activation quantisation (bit-identical to quantize_act_generic) --------------------- */

/* Store n (<= 8) lanes of v at p. */
AI void store_lanes(float *p, __m256 v, int n) {
    if (n == 8) {
        _mm256_storeu_ps(p, v);
    } else {
        float t[8];                               /* [8] lanes */
        _mm256_storeu_ps(t, v);
        memcpy(p, t, (size_t)n * sizeof(float));
    }
}

/* Where quantise_blocks8 puts 8 blocks: int16 blocks q, d, s, or (to8) int8 ones. */
typedef struct {
    int16_t *q; float *d, *s;
    int8_t *q8; float *d8, *s8; int32_t *q8sum;
} act_out;

/* Blocks src[0 .. nblk-1] (nblk <= 8, 32 values each) into o (from block 0 of its pointers).
 * Eight blocks at a time so that their maxima, scales and sums are reduced and divided as whole
 * vectors (one block at a time, the horizontal reductions and scalar divisions took half the
 * time). Rounding after the clamp to +-32767 gives the generic code's round-then-clamp: both
 * bounds are integers. to8: the int16 values, still in registers, are rounded again to int8
 * (|q * 127 / 32767| <= 127: no clamp) and stored in ACT8_ORDER: packs leaves each 128-bit lane
 * with values 0-3, 8-11, 16-19, 24-27 (low lane) and 4-7, ... (high lane); interleaving the two
 * lanes' bytes gives each 8 values as 0 4 1 5 2 6 3 7. */
AI void quantize_blocks8(const float *const src[8], int nblk, int to8, const act_out *o) {
    const __m256i absbits = _mm256_set1_epi32(0x7fffffff);
    const __m256 hi = _mm256_set1_ps((float)QK_ACT_MAX), lo = _mm256_set1_ps(-(float)QK_ACT_MAX);
    const __m256 rescale = _mm256_set1_ps(127.0f / (float)QK_ACT_MAX);
    __m256i am[8];                                /* [8 blocks] lane-wise max |x| bit pattern */
    for (int j = 0; j < 8; j++) {
        const float *vj = src[j];
        if (j >= nblk) { am[j] = _mm256_setzero_si256(); continue; }
#define ABITS(u) _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(vj + 8 * (u))), absbits)
        am[j] = _mm256_max_epi32(_mm256_max_epi32(ABITS(0), ABITS(1)), _mm256_max_epi32(ABITS(2), ABITS(3)));
#undef ABITS
    }
    /* as quantize_act_generic: NaN or inf in a block gives d = NaN and q = 0; d < FLT_MIN, zeros */
    const __m256 amax = _mm256_castsi256_ps(hmax8x8i(am));        /* [8 blocks] */
    const __m256 finite = _mm256_cmp_ps(amax, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ);
    __m256 db = _mm256_div_ps(amax, hi);                           /* [8 blocks] scales */
    const __m256 ok = _mm256_and_ps(finite, _mm256_cmp_ps(db, _mm256_set1_ps(FLT_MIN), _CMP_GE_OQ));
    db = _mm256_blendv_ps(_mm256_set1_ps(NAN), _mm256_and_ps(db, ok), finite);
    __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), db), ok);
    __m256i sums[8];                              /* [8 blocks] lane-wise sums of q (or q8) */
    for (int j = 0; j < 8; j++) {
        sums[j] = _mm256_setzero_si256();
        if (j >= nblk) continue;
        const __m256i lane = _mm256_set1_epi32(j);
        const __m256 mul = _mm256_permutevar8x32_ps(id, lane), keep = _mm256_permutevar8x32_ps(ok, lane);
        __m256i iq[4];                            /* [4] x 8 int32 values */
        for (int u = 0; u < 4; u++)               /* keep: x * 0 is NaN for an inf x */
            iq[u] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_and_ps(
                        _mm256_mul_ps(_mm256_loadu_ps(src[j] + 8 * u), mul), keep), lo), hi));
        if (to8)
            for (int u = 0; u < 4; u++)
                iq[u] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(iq[u]), rescale));
        sums[j] = _mm256_add_epi32(_mm256_add_epi32(iq[0], iq[1]), _mm256_add_epi32(iq[2], iq[3]));
        if (to8) {
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iq[0], iq[1]), _mm256_packs_epi32(iq[2], iq[3]));
            __m128i plo = _mm256_castsi256_si128(p), phi = _mm256_extracti128_si256(p, 1);
            _mm_storeu_si128((__m128i *)(o->q8 + j * QK), _mm_unpacklo_epi8(plo, phi));
            _mm_storeu_si128((__m128i *)(o->q8 + j * QK + 16), _mm_unpackhi_epi8(plo, phi));
        } else {
            /* packs works within 128-bit lanes: [0-3 4-7 | 8-11 12-15] after the permute */
            __m256i p01 = _mm256_permute4x64_epi64(_mm256_packs_epi32(iq[0], iq[1]), _MM_SHUFFLE(3, 1, 2, 0));
            __m256i p23 = _mm256_permute4x64_epi64(_mm256_packs_epi32(iq[2], iq[3]), _MM_SHUFFLE(3, 1, 2, 0));
            _mm256_store_si256((__m256i *)(o->q + j * QK), p01);
            _mm256_store_si256((__m256i *)(o->q + j * QK + 16), p23);
        }
    }
    __m256i tot = hsum8x8i(sums);                 /* [8 blocks] sums of q (or q8) */
    if (to8) {
        __m256 d8 = _mm256_mul_ps(db, _mm256_set1_ps((float)QK_ACT_MAX / 127.0f));
        store_lanes(o->d8, d8, nblk);
        store_lanes(o->s8, _mm256_mul_ps(d8, _mm256_cvtepi32_ps(tot)), nblk);
        store_lanes((float *)o->q8sum, _mm256_castsi256_ps(tot), nblk);
    } else {
        store_lanes(o->d, db, nblk);
        store_lanes(o->s, _mm256_mul_ps(db, _mm256_cvtepi32_ps(tot)), nblk);
    }
}

/* One row x[k], 8 blocks at a time (a partial last block from a zero-padded copy). */
AI void quantize_row(const float *x, int64_t k, int to8, act_out o) {
    const int64_t nb = (k + QK - 1) / QK;
    float pad[QK];                                /* [32] the last block, zero past k */
    const int64_t tail = k % QK;
    if (tail) {
        memcpy(pad, x + (nb - 1) * QK, (size_t)tail * sizeof(float));
        memset(pad + tail, 0, (size_t)(QK - tail) * sizeof(float));
    }
    for (int64_t b = 0; b < nb; b += 8) {
        int nblk = nb - b < 8 ? (int)(nb - b) : 8;
        const float *src[8];                      /* [8] where each block's values are */
        for (int j = 0; j < 8; j++)
            src[j] = tail && b + j == nb - 1 ? pad : x + (b + j) * QK;
        quantize_blocks8(src, nblk, to8, &o);
        if (to8) { o.q8 += 8 * QK; o.d8 += 8; o.s8 += 8; o.q8sum += 8; }
        else     { o.q += 8 * QK; o.d += 8; o.s += 8; }
    }
}

static void quantize_act_avx2(const float *x, int16_t *q, float *d, float *s, int64_t k) {
    quantize_row(x, k, 0, (act_out){ .q = q, .d = d, .s = s });
}

static void quantize_act8_avx2(const float *x, int8_t *q8, float *d8, float *s8, int32_t *q8sum,
                               int64_t k) {
    quantize_row(x, k, 1, (act_out){ .q8 = q8, .d8 = d8, .s8 = s8, .q8sum = q8sum });
}

/* ---- float weights (F32, F16, BF16) ------------------------------------------------------ */

AI __m256 load_w8(int wt, const uint8_t *w, int64_t j) {
    if (wt == SLM_F32) return _mm256_loadu_ps((const float *)w + j);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + j));
    if (wt == SLM_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));   /* bf16 */
}

AI float load_w1(int wt, const uint8_t *w, int64_t j) {
    if (wt == SLM_F32) return ((const float *)w)[j];
    if (wt == SLM_F16) return _cvtsh_ss(((const uint16_t *)w)[j]);
    return slm_bf16_to_fp32(((const uint16_t *)w)[j]);
}

/* y[MR, NR] tile of dots of float rows x[i] (k floats apart) with weight rows w[j]. */
AI void ftile(int wt, int MR, int NR, const uint8_t *w, size_t ws, const float *x,
              float *y, size_t ys, int64_t k, int accumulate) {
    __m256 acc[MR_MAX][NR_MAX];                    /* [MR][NR] accumulators */
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= k; t += 8) {
        __m256 wv[NR_MAX];                         /* [NR] 8 weights each */
        for (int j = 0; j < NR; j++) wv[j] = load_w8(wt, w + j * ws, t);
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * k + t);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float s = hsum8(acc[i][j]);
            for (int64_t u = t; u < k; u++) s += load_w1(wt, w + j * ws, u) * x[i * k + u];
            store_out(&y[i * ys + j], s, accumulate);
        }
}

/* ---- quantised weights (Q8_0, Q4_0, Q4_1) x int16 activations --------------------------- */

/* Q4_1's minimum term of a tile, sum_b m[j][b] * s[i][b], over a chunk of blocks: the
 * minimums are collected as fp16 bits during the block loop and dotted with the activation sums
 * 8 blocks at a time once the chunk ends (one multiply-add per 8 blocks instead of per block). */
#define MIN_CHUNK 64

AI void min_terms(int MR, int NR, const uint16_t mbits[NR_MAX][MIN_CHUNK], int64_t cn,
                  const float *xs, int64_t nb, int64_t b0, float off[MR_MAX][NR_MAX]) {
    for (int j = 0; j < NR; j++)
        for (int i = 0; i < MR; i++) {
            const float *sx = xs + i * nb + b0;   /* [cn] activation sums of row i */
            __m256 acc = _mm256_setzero_ps();
            int64_t c = 0;
            for (; c + 8 <= cn; c += 8)
                acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)&mbits[j][c])),
                                      _mm256_loadu_ps(sx + c), acc);
            float t = hsum8(acc);
            for (; c < cn; c++) t += _cvtsh_ss(mbits[j][c]) * sx[c];
            off[i][j] += t;
        }
}

/* y[MR, NR] tile over all blocks; x rows start at block row xr (block index xr * nb). */
AI void qtile(int wt, int MR, int NR, const uint8_t *w, size_t ws, const slm_act *x, int64_t xr,
              float *y, size_t ys, int accumulate) {
    const int64_t nb = x->nb;
    const __m256i low4 = _mm256_set1_epi16(15), eight = _mm256_set1_epi16(8);
    const size_t bs = wt == SLM_Q8_0 ? sizeof(block_q8_0) : wt == SLM_Q4_0 ? sizeof(block_q4_0)
                                                            : sizeof(block_q4_1);
    __m256 acc[MR_MAX][NR_MAX];                    /* [MR][NR] accumulators */
    float off[MR_MAX][NR_MAX] = {{0}};             /* [MR][NR] Q4_1 minimum terms */
    uint16_t mbits[NR_MAX][MIN_CHUNK];             /* [NR][chunk] Q4_1 minimums, fp16 */
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const int16_t *xq = x->q + xr * nb * QK;      /* [MR, nb, 32] */
    const float *xd = x->d + xr * nb, *xs = x->s + xr * nb;   /* [MR, nb] */
    for (int64_t b0 = 0; b0 < nb; b0 += MIN_CHUNK) {
        int64_t b1 = b0 + MIN_CHUNK < nb ? b0 + MIN_CHUNK : nb;
        for (int64_t b = b0; b < b1; b++) {
            if (MR == 1)      /* decode streams weights from memory: fetch the next tile's rows */
                for (int j = 0; j < NR; j++)
                    _mm_prefetch((const char *)w + (j + PF_TILES * NR) * ws + b * bs, _MM_HINT_T0);
            __m256i wl[NR_MAX], wh[NR_MAX];        /* [NR] weight values 0-15 and 16-31 as int16 */
            __m256 dw[NR_MAX];                     /* [NR] weight scales */
            for (int j = 0; j < NR; j++) {
                const uint8_t *row = w + j * ws;
                if (wt == SLM_Q8_0) {
                    const block_q8_0 *bw = (const block_q8_0 *)row + b;
                    wl[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw->qs));
                    wh[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bw->qs + 16)));
                    dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
                } else if (wt == SLM_Q4_0) {
                    const block_q4_0 *bw = (const block_q4_0 *)row + b;
                    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)bw->qs));
                    wl[j] = _mm256_sub_epi16(_mm256_and_si256(v, low4), eight);
                    wh[j] = _mm256_sub_epi16(_mm256_srli_epi16(v, 4), eight);
                    dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
                } else {
                    const block_q4_1 *bw = (const block_q4_1 *)row + b;
                    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)bw->qs));
                    wl[j] = _mm256_and_si256(v, low4);
                    wh[j] = _mm256_srli_epi16(v, 4);
                    dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
                    mbits[j][b - b0] = bw->m;
                }
            }
            for (int i = 0; i < MR; i++) {
                const __m256i *q = (const __m256i *)(xq + (i * nb + b) * QK);
                __m256i xa = _mm256_load_si256(q), xb = _mm256_load_si256(q + 1);
                __m256 dx = _mm256_broadcast_ss(xd + i * nb + b);
                for (int j = 0; j < NR; j++) {
                    __m256i p = _mm256_add_epi32(_mm256_madd_epi16(wl[j], xa), _mm256_madd_epi16(wh[j], xb));
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dx, dw[j]), acc[i][j]);
                }
            }
        }
        if (wt == SLM_Q4_1) min_terms(MR, NR, mbits, b1 - b0, xs, nb, b0, off);
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) store_out(&y[i * ys + j], hsum8(acc[i][j]) + off[i][j], accumulate);
}

/* ---- many rows: row-interleaved activations (see slm_act) ------------------------------ */

/* y rows of NG groups of 8 activation rows x NR weight rows. Per block, each weight row is
 * widened to 32 int16 once (kept in wb, each pair then broadcast from memory), and for every
 * pair e one vector holds that pair of 8 rows: madd + add gives 8 rows' partial dots at once,
 * so the conversion and scaling run once per block for 8 outputs. rows: valid rows of the last
 * group (the rest are zero padding, not stored). */
AI void qtile8(int wt, int NR, int NG, const uint8_t *w, size_t ws, const slm_act *x, int64_t g0,
               float *y, size_t ys, int rows, int accumulate) {
    const int64_t nb = x->nb;
    const __m128i low4 = _mm_set1_epi8(15);
    const __m256i eight = _mm256_set1_epi16(8);
    __attribute__((aligned(32))) int16_t wb[NR_MAX][QK];   /* [NR][32] widened weight block */
    __m256 acc[NR_MAX][2];                                   /* [NR][NG] lanes = 8 rows */
    for (int j = 0; j < NR; j++)
        for (int g = 0; g < NG; g++) acc[j][g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256 dw[NR_MAX], mw[NR_MAX];                       /* [NR] scale, Q4_1 minimum */
        for (int j = 0; j < NR; j++) {
            const uint8_t *row = w + j * ws;
            __m256i lo, hi;                                  /* values 0-15, 16-31 as int16 */
            if (wt == SLM_Q8_0) {
                const block_q8_0 *bw = (const block_q8_0 *)row + b;
                lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw->qs));
                hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bw->qs + 16)));
                dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
            } else {
                const uint8_t *qs = wt == SLM_Q4_0 ? ((const block_q4_0 *)row + b)->qs
                                                   : ((const block_q4_1 *)row + b)->qs;
                __m128i v = _mm_loadu_si128((const __m128i *)qs);
                lo = _mm256_cvtepu8_epi16(_mm_and_si128(v, low4));
                hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), low4));
                if (wt == SLM_Q4_0) {
                    const block_q4_0 *bw = (const block_q4_0 *)row + b;
                    lo = _mm256_sub_epi16(lo, eight);
                    hi = _mm256_sub_epi16(hi, eight);
                    dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
                } else {
                    const block_q4_1 *bw = (const block_q4_1 *)row + b;
                    dw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->d));
                    mw[j] = _mm256_cvtph_ps(_mm_set1_epi16((short)bw->m));
                }
            }
            _mm256_store_si256((__m256i *)wb[j], lo);
            _mm256_store_si256((__m256i *)(wb[j] + 16), hi);
        }
        __m256i p[NR_MAX][2];                                /* [NR][NG] int32 dots, lanes = rows */
        for (int j = 0; j < NR; j++)
            for (int g = 0; g < NG; g++) p[j][g] = _mm256_setzero_si256();
        for (int e = 0; e < QK / 2; e++) {
            __m256i xe[2];                                   /* [NG] pair e of 8 rows */
            for (int g = 0; g < NG; g++)
                xe[g] = _mm256_load_si256((const __m256i *)(x->qi + (((g0 + g) * nb + b) * 16 + e) * 8));
            for (int j = 0; j < NR; j++) {
                int32_t pair;
                memcpy(&pair, wb[j] + 2 * e, sizeof pair);
                __m256i wv = _mm256_set1_epi32(pair);
                for (int g = 0; g < NG; g++) p[j][g] = _mm256_add_epi32(p[j][g], _mm256_madd_epi16(xe[g], wv));
            }
        }
        for (int g = 0; g < NG; g++) {
            __m256 dx = _mm256_load_ps(x->di + ((g0 + g) * nb + b) * 8);
            for (int j = 0; j < NR; j++) {
                acc[j][g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[j][g]), _mm256_mul_ps(dx, dw[j]), acc[j][g]);
                if (wt == SLM_Q4_1)
                    acc[j][g] = _mm256_fmadd_ps(_mm256_load_ps(x->si + ((g0 + g) * nb + b) * 8), mw[j], acc[j][g]);
            }
        }
    }
    for (int g = 0; g < NG; g++) {
        int nr = g == NG - 1 ? rows : 8;
        for (int j = 0; j < NR; j++) {
            float t[8];                                      /* [8] rows of output column j */
            _mm256_storeu_ps(t, acc[j][g]);
            for (int l = 0; l < nr; l++) store_out(&y[(g * 8 + l) * ys + j], t[l], accumulate);
        }
    }
}

/* Rows r0 .. r0+m-1 (r0 a multiple of 8) through qtile8: panels of weight rows, then 16-row
 * double groups (one 8-row group at the end), then pairs of weight rows. */
AI void gemm_quant8(int wt, const void *w, size_t ws, const slm_act *x, int64_t r0, float *y,
                    size_t ys, int64_t m, int64_t n, int accumulate) {
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
        int64_t j1 = j0 + PANEL < n ? j0 + PANEL : n;
        for (int64_t i0 = 0; i0 < m; i0 += 16) {
            int ng = m - i0 > 8 ? 2 : 1;
            int rows = (int)(m - i0 - 8 * (ng - 1));
            rows = rows > 8 ? 8 : rows;
            for (int64_t j = j0; j < j1; j += 2) {
                const uint8_t *wj = (const uint8_t *)w + j * ws;
                int64_t g0 = (r0 + i0) / 8;
                float *yt = y + i0 * ys + j;
                if (j + 1 < j1) {
                    if (ng == 2) qtile8(wt, 2, 2, wj, ws, x, g0, yt, ys, rows, accumulate);
                    else qtile8(wt, 2, 1, wj, ws, x, g0, yt, ys, rows, accumulate);
                } else {
                    if (ng == 2) qtile8(wt, 1, 2, wj, ws, x, g0, yt, ys, rows, accumulate);
                    else qtile8(wt, 1, 1, wj, ws, x, g0, yt, ys, rows, accumulate);
                }
            }
        }
    }
}

/* ---- repacked weights (SLM_*_X8, see blocks.h): one lane per weight row ------------------- */

/* acc += the int16 pair dots of w and x (both [16] int16): vpdpwssd where AVX512-VNNI is
 * compiled in (matmul_avx512vnni.c), else vpmaddwd + vpaddd. */
#ifdef SLM_VNNI
#define PAIR_DOT(acc, w, x) _mm256_dpwssd_epi32(acc, w, x)
#define X8_MR 6     /* activation rows per tile: 2 x 6 int and 2 x 6 float accumulators */
#define X8_NG 2     /* groups of 8 weight rows per tile  (fit in AVX-512's 32 registers) */
#define X8_MR_A8 6  /* the same for int8 activation blocks */
#else
#define PAIR_DOT(acc, w, x) _mm256_add_epi32(acc, _mm256_madd_epi16(w, x))
#define X8_MR 6     /* 16 registers: 6 int accumulators in registers, the 6 float ones touched
                     * once a block (on the stack); 4 rows ran 1-8% slower on Zen 1 */
#define X8_NG 1     /* one group (two groups did not pay) */
#define X8_MR_A8 4  /* int8 tiles with 6 rows ran 4-11% slower (more live registers) */
#endif

/* Pins an integer accumulator to a register after each dot (an empty asm that "changes" it).
 * With 16 registers GCC otherwise reassociates a block's pair dots into trees, hoists the
 * broadcasts for them and spills accumulators to the stack on every step (3 of 4 in a 4-row
 * tile): pinned, Q4 tiles ran 12-16% faster on Zen 1 (Q8 the same). VNNI's 32 registers need
 * none. */
#ifdef SLM_VNNI
#define KEEP_IN_REGISTER(v) ((void)0)
#else
#define KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))
#endif

#define X8_PANEL 8  /* groups of 8 weight rows per panel (prefill) */
_Static_assert((X8_MR == 4 || X8_MR == 6) && X8_MR_A8 <= X8_MR && (X8_NG == 1 || X8_NG == 2),
               "gemm_x8 has cases for tiles of 4 or 6 rows of x and 1 or 2 groups");

/* Bytes of one repacked block (8 rows' block b), and where its qs start (after d, and m). */
AI size_t x8_block_bytes(int wt) {
    return wt == SLM_Q8_0_X8 ? sizeof(block_q8_0x8) : wt == SLM_Q4_0_X8 ? sizeof(block_q4_0x8)
                                                                       : sizeof(block_q4_1x8);
}
AI size_t x8_qs_offset(int wt) {
    return wt == SLM_Q8_0_X8 ? offsetof(block_q8_0x8, qs) : wt == SLM_Q4_0_X8 ?
           offsetof(block_q4_0x8, qs) : offsetof(block_q4_1x8, qs);
}

/* y[MR rows, NG groups of 8 weight rows] (+)= acc; the last group has nr <= 8 rows. */
AI void store_x8(int NG, int MR, __m256 acc[2][X8_MR], float *y, size_t ys, int nr, int accumulate) {
    for (int g = 0; g < NG; g++) {
        int rows = g == NG - 1 ? nr : 8;
        for (int i = 0; i < MR; i++) {
            float *yi = y + i * ys + 8 * g;
            if (rows == 8) {
                _mm256_storeu_ps(yi, accumulate ? _mm256_add_ps(_mm256_loadu_ps(yi), acc[g][i]) : acc[g][i]);
            } else {
                float t[8];                         /* [8] lanes */
                _mm256_storeu_ps(t, acc[g][i]);
                for (int r = 0; r < rows; r++) store_out(&yi[r], t[r], accumulate);
            }
        }
    }
}

/* acc[g][i] += the int32 dots p[g][i] of one block times the scales of its 8 weight rows (the
 * fp16 d of blk0 / blk1) and of activation row i (dx[i * nb]), and for Q4 + the rows' minimum
 * (Q4_1's m, Q4_0's -8 d) times the activation block's scaled sum (sx[i * nb]; NULL when p
 * holds Q4_0's -8 already). */
AI void scale_x8(int wt, int MR, int NG, const uint8_t *blk0, const uint8_t *blk1,
                 __m256i p[2][X8_MR], const float *dx, const float *sx, int64_t nb,
                 __m256 acc[2][X8_MR]) {
    for (int g = 0; g < NG; g++) {
        const uint16_t *dbits = (const uint16_t *)(g ? blk1 : blk0);  /* [8] fp16 scales */
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dbits));
        for (int i = 0; i < MR; i++)
            acc[g][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[g][i]),
                                        _mm256_mul_ps(dw, _mm256_broadcast_ss(dx + i * nb)), acc[g][i]);
        if (wt != SLM_Q8_0_X8 && sx) {
            __m256 mw = wt == SLM_Q4_1_X8 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dbits + 8)))
                                          : _mm256_mul_ps(dw, _mm256_set1_ps(-8.0f));
            for (int i = 0; i < MR; i++)
                acc[g][i] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(sx + i * nb), acc[g][i]);
        }
    }
}

/* y[MR rows, NG groups of 8 weight rows] for NG (1 or 2) consecutive groups of repacked rows
 * from wg (gstride bytes apart; the last group has nr <= 8 rows); x rows from xr on. For each
 * block: every pair p of a group's 8 rows is widened to int16 from a 32-byte load with shifts
 * and masks (one vector per pair, lanes = rows) and dotted with activation pair p of each row
 * of x, broadcast once for the NG groups; then one conversion and FMA per block per row of x
 * and group (and one more for the Q4 offset: Q4_1's minimum, Q4_0's -8, times the activation
 * block's sum). */
AI void xtile(int wt, int MR, int NG, const uint8_t *wg, size_t gstride, const slm_act *x,
              int64_t xr, float *y, size_t ys, int nr, int accumulate) {
    const int64_t nb = x->nb;
    const size_t bs = x8_block_bytes(wt), qoff = x8_qs_offset(wt);
    const __m256i low4 = _mm256_set1_epi16(15);
    __m256 acc[2][X8_MR];                           /* [NG][MR] lanes = the 8 weight rows */
    for (int g = 0; g < NG; g++)
        for (int i = 0; i < MR; i++) acc[g][i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        /* no software prefetch: a group is one linear stream that the hardware prefetcher
         * follows; prefetching 4 to 24 blocks ahead made decode 10-15% slower */
        const uint8_t *blk0 = wg + b * bs, *blk1 = blk0 + (NG > 1 ? gstride : 0);
        __m256i p[2][X8_MR];     /* [NG][MR] int32 dots of block b (decode: [2 chains][1]) */
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < MR; i++) p[g][i] = _mm256_setzero_si256();
        /* decode (one row, one group) splits its dots over two chains: p[1] holds the odd pairs */
        const int split = MR == 1 && NG == 1;
#define PAIR(w0, w1, e)                                                                       \
        for (int i = 0; i < MR; i++) {                                                        \
            __m256i xe = _mm256_set1_epi32(((const int32_t *)(x->q + ((xr + i) * nb + b) * QK))[e]); \
            int c = split ? (e) & 1 : 0;                                                      \
            p[c][i] = PAIR_DOT(p[c][i], w0, xe);                                              \
            if (NG > 1) p[1][i] = PAIR_DOT(p[1][i], w1, xe);                                  \
            KEEP_IN_REGISTER(p[c][i]);                                                        \
            if (NG > 1) KEEP_IN_REGISTER(p[1][i]);                                            \
        }
#define LOAD(blk, t) _mm256_loadu_si256((const __m256i *)((blk) + qoff + 32 * (t)))
        if (wt == SLM_Q8_0_X8) {              /* load t: pairs 4(t/2) + t%2 and 2 more */
            for (int t = 0; t < 8; t++) {
                __m256i v0 = LOAD(blk0, t), v1 = NG > 1 ? LOAD(blk1, t) : v0;
                PAIR(_mm256_srai_epi16(_mm256_slli_epi16(v0, 8), 8),
                     _mm256_srai_epi16(_mm256_slli_epi16(v1, 8), 8), 4 * (t / 2) + t % 2)
                PAIR(_mm256_srai_epi16(v0, 8), _mm256_srai_epi16(v1, 8), 4 * (t / 2) + t % 2 + 2)
            }
        } else {                              /* Q4: mask and shift (no sign to extend) */
            for (int t = 0; t < 4; t++) {
                __m256i v0 = LOAD(blk0, t), v1 = NG > 1 ? LOAD(blk1, t) : v0;
                PAIR(_mm256_and_si256(v0, low4), _mm256_and_si256(v1, low4), 4 * t)
                PAIR(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4),
                     _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4), 4 * t + 1)
                PAIR(_mm256_and_si256(_mm256_srli_epi16(v0, 8), low4),
                     _mm256_and_si256(_mm256_srli_epi16(v1, 8), low4), 4 * t + 2)
                PAIR(_mm256_srli_epi16(v0, 12), _mm256_srli_epi16(v1, 12), 4 * t + 3)
            }
        }
#undef LOAD
#undef PAIR
        if (split) p[0][0] = _mm256_add_epi32(p[0][0], p[1][0]);
        scale_x8(wt, MR, NG, blk0, blk1, p, x->d + xr * nb + b, x->s + xr * nb + b, nb, acc);
    }
    store_x8(NG, MR, acc, y, ys, nr, accumulate);
}


/* ---- repacked weights x int8 activation blocks (x->q8, prefill_act = int8) -------------------
 *
 * Each 32-byte step of a repacked block gives 4 values of each of the group's 8 rows in the byte
 * order of the int8 activation blocks (blocks.h): Q4 as a load masked (values 8t + {0,4,1,5})
 * or shifted and masked (8t + {2,6,3,7}), Q8 as a load. One broadcast of 4 activation bytes then
 * meets 8 rows in a u8 x s8 quad dot: 8 dots per block instead of 16 int16 pair dots.
 *
 * The dot: vpdpbusd with VNNI; on AVX2 maddubs (Q4 cannot saturate its int16 pairs: 2 * 15 *
 * 127 fits), the block's pairs added in int16 and widened once (SUMS16), or for Q8 widened by
 * a madd by ones at each step. Q8 weights are signed: with VNNI they enter biased by +128 (xor
 * 0x80), the bias taken off through the activation sum like Q4_0's 8; on AVX2 a biased pair
 * would saturate (2 * 255 * 127), so the sign moves onto x instead, |w| x sign(x, w) (2 * 128 *
 * 127 fits). */
#ifdef SLM_VNNI
#define Q8_BIAS 128
#define SUMS16 0
#else
#define Q8_BIAS 0
#define SUMS16 1
#endif

/* What the integer dots of a block of x row i start from: -bias * sum(q8) for weights stored
 * biased (Q4_0's 8, Q8_0's Q8_BIAS), else 0. */
AI int32_t act8_start(int wt, const slm_act *x, int64_t row, int64_t b) {
    int bias = wt == SLM_Q4_0_X8 ? 8 : wt == SLM_Q8_0_X8 ? Q8_BIAS : 0;
    return -bias * x->q8sum[row * x->nb + b];
}

/* Weights of activation dwords 2t and 2t+1 of one repacked block (qs at q): w[2], and |w| for
 * AVX2's signed Q8 dot. */
AI void act8_weights(int wt, const uint8_t *q, int t, __m256i w[2], __m256i wabs[2]) {
    if (wt == SLM_Q8_0_X8) {
        for (int h = 0; h < 2; h++) {
            w[h] = _mm256_loadu_si256((const __m256i *)(q + 32 * (2 * t + h)));
#ifdef SLM_VNNI
            w[h] = _mm256_xor_si256(w[h], _mm256_set1_epi8((char)0x80));
#else
            wabs[h] = _mm256_abs_epi8(w[h]);
#endif
        }
    } else {
        const __m256i low4 = _mm256_set1_epi8(15);
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * t));
        w[0] = _mm256_and_si256(v, low4);
        w[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
    (void)wabs;
}

/* p + the quad dots of w (8 rows x 4 values, from act8_weights) with x (4 bytes broadcast). */
AI __m256i act8_dot(int wt, __m256i p, __m256i w, __m256i wabs, __m256i x) {
#ifdef SLM_VNNI
    (void)wt; (void)wabs;
    return _mm256_dpbusd_epi32(p, w, x);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i pairs = wt == SLM_Q8_0_X8 ? _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, w))
                                      : _mm256_maddubs_epi16(w, x);
    return _mm256_add_epi32(p, _mm256_madd_epi16(pairs, ones));
#endif
}

/* y[MR rows, one group of 8 weight rows] from int8 activation blocks (see above), with the
 * scaling of xtile (scale_x8). Two groups at once with VNNI: xtile_act8_zmm. */
AI void xtile_act8(int wt, int MR, const uint8_t *wg, const slm_act *x, int64_t xr, float *y,
                   size_t ys, int nr, int accumulate) {
    const int64_t nb = x->nb;
    const size_t bs = x8_block_bytes(wt), qoff = x8_qs_offset(wt);
    __m256 acc[2][X8_MR];                           /* [1][MR] lanes = the 8 weight rows */
    for (int i = 0; i < MR; i++) acc[0][i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = wg + b * bs;
        __m256i p[2][X8_MR];                        /* [1][MR] int32 dots of block b */
        for (int i = 0; i < MR; i++) p[0][i] = _mm256_set1_epi32(act8_start(wt, x, xr + i, b));
        /* AVX2 with Q4: a row's 8 maddubs of the block add up in int16 lanes (each a sum of 16
         * products |15 x 128|: at most 30720, no overflow), and one madd by ones widens them: 9
         * multiplies per row and block instead of 16 (Q8's 2 x 128 x 127 pairs leave no room). */
        const int sum16 = SUMS16 && wt != SLM_Q8_0_X8;
        __m256i s16[X8_MR];                         /* [MR] int16 sums of product pairs */
        for (int i = 0; i < MR; i++) s16[i] = _mm256_setzero_si256();
        for (int t = 0; t < 4; t++) {
            __m256i w[2], wabs[2];                  /* [2] weights of dwords 2t, 2t+1 */
            act8_weights(wt, blk + qoff, t, w, wabs);
            for (int i = 0; i < MR; i++) {
                const int32_t *xq = (const int32_t *)(x->q8 + ((xr + i) * nb + b) * QK);
                for (int h = 0; h < 2; h++) {
                    __m256i xe = _mm256_set1_epi32(xq[2 * t + h]);
                    if (sum16) {
                        s16[i] = _mm256_add_epi16(s16[i], _mm256_maddubs_epi16(w[h], xe));
                        KEEP_IN_REGISTER(s16[i]);
                    } else {
                        p[0][i] = act8_dot(wt, p[0][i], w[h], wabs[h], xe);
                        KEEP_IN_REGISTER(p[0][i]);
                    }
                }
            }
        }
        if (sum16)
            for (int i = 0; i < MR; i++)
                p[0][i] = _mm256_add_epi32(p[0][i], _mm256_madd_epi16(s16[i], _mm256_set1_epi16(1)));
        scale_x8(wt, MR, 1, blk, blk, p, x->d8 + xr * nb + b,
                 wt == SLM_Q4_1_X8 ? x->s8 + xr * nb + b : NULL, nb, acc);
    }
    store_x8(1, MR, acc, y, ys, nr, accumulate);
}

#ifdef SLM_VNNI
/* xtile_act8 for two groups at once (NG = 2) in 512-bit vectors: lanes 0-7 are the rows of
 * the first group, 8-15 those of the second, so a tile holds MR integer and MR float
 * accumulators instead of 2 x MR of each (6 rows x 2 groups of 256-bit ones spilled the float
 * accumulators to the stack every block): Q4_1 0.38-0.46 -> 0.49-0.59 of the vpdpbusd peak. */
AI void xtile_act8_zmm(int wt, int MR, const uint8_t *wg, size_t gstride, const slm_act *x,
                       int64_t xr, float *y, size_t ys, int nr, int accumulate) {
    const int64_t nb = x->nb;
    const size_t bs = x8_block_bytes(wt), qoff = x8_qs_offset(wt);
    const __m512i low4 = _mm512_set1_epi8(15), bias8 = _mm512_set1_epi8((char)0x80);
    __m512 acc[X8_MR];                              /* [MR] lanes = the 16 weight rows */
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk0 = wg + b * bs, *blk1 = blk0 + gstride;
        __m512i p[X8_MR];                           /* [MR] int32 dots of block b */
        for (int i = 0; i < MR; i++) p[i] = _mm512_set1_epi32(act8_start(wt, x, xr + i, b));
#define BOTH(s) _mm512_inserti64x4(                                                           \
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk0 + qoff + 32 * (s)))), \
            _mm256_loadu_si256((const __m256i *)(blk1 + qoff + 32 * (s))), 1)
        for (int t = 0; t < 4; t++) {
            __m512i w[2];                           /* [2] weights of dwords 2t, 2t+1 */
            if (wt == SLM_Q8_0_X8) {
                w[0] = _mm512_xor_si512(BOTH(2 * t), bias8);
                w[1] = _mm512_xor_si512(BOTH(2 * t + 1), bias8);
            } else {
                __m512i v = BOTH(t);
                w[0] = _mm512_and_si512(v, low4);
                w[1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            }
            for (int i = 0; i < MR; i++) {
                const int32_t *xq = (const int32_t *)(x->q8 + ((xr + i) * nb + b) * QK);
                p[i] = _mm512_dpbusd_epi32(p[i], w[0], _mm512_set1_epi32(xq[2 * t]));
                p[i] = _mm512_dpbusd_epi32(p[i], w[1], _mm512_set1_epi32(xq[2 * t + 1]));
            }
        }
#undef BOTH
#define HALVES(off) _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(        \
            _mm_loadu_si128((const __m128i *)(blk0 + (off)))), _mm_loadu_si128((const __m128i *)(blk1 + (off))), 1))
        __m512 dw = HALVES(0);                      /* [16] fp16 scales of both groups */
        for (int i = 0; i < MR; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[i]),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(x->d8[(xr + i) * nb + b])), acc[i]);
        if (wt == SLM_Q4_1_X8) {
            __m512 mw = HALVES(16);                 /* [16] fp16 minimums */
            for (int i = 0; i < MR; i++)
                acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s8[(xr + i) * nb + b]), acc[i]);
        }
#undef HALVES
    }
    __m256 halves[2][X8_MR];
    for (int i = 0; i < MR; i++) {
        halves[0][i] = _mm512_castps512_ps256(acc[i]);
        halves[1][i] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i]), 1));
    }
    store_x8(2, MR, halves, y, ys, nr, accumulate);
}
#endif

/* Panels of X8_PANEL groups, strips of X8_MR rows of x (X8_MR_A8 with int8 blocks), then tiles
 * of X8_NG groups (one at the end). w starts at a group; n rows (the last group may be
 * partial). */
AI void gemm_x8(int wt, const void *w, size_t ws, const slm_act *x, int64_t r0, float *y,
                size_t ys, int64_t m, int64_t n, int accumulate) {
    const int64_t groups = (n + 7) / 8;
    const size_t gstride = 8 * ws;
    const int act8 = x->q8 != NULL;                 /* int8 activation blocks */
    const int mr_max = act8 ? X8_MR_A8 : X8_MR;     /* rows of x per strip */
    for (int64_t g0 = 0; g0 < groups; g0 += X8_PANEL) {
        int64_t g1 = g0 + X8_PANEL < groups ? g0 + X8_PANEL : groups;
        for (int64_t i0 = 0; i0 < m; i0 += mr_max) {
            int mr = m - i0 < mr_max ? (int)(m - i0) : mr_max;
            for (int64_t g = g0; g < g1;) {
                /* decode (one row of x) stays on one group: two streams at once ran at half
                 * the speed */
                int ng = mr > 1 && g + X8_NG <= g1 ? X8_NG : 1;
                const uint8_t *wg = (const uint8_t *)w + (size_t)g * gstride;
                int nr = n - (g + ng - 1) * 8 < 8 ? (int)(n - (g + ng - 1) * 8) : 8;
                float *yt = y + i0 * ys + g * 8;
#ifdef SLM_VNNI
#define XT(MR) (ng == 1 ? (act8 ? xtile_act8(wt, MR, wg, x, r0 + i0, yt, ys, nr, accumulate)          \
                              : xtile(wt, MR, 1, wg, gstride, x, r0 + i0, yt, ys, nr, accumulate)) \
                : act8 ? xtile_act8_zmm(wt, MR, wg, gstride, x, r0 + i0, yt, ys, nr, accumulate)     \
                : xtile(wt, MR, 2, wg, gstride, x, r0 + i0, yt, ys, nr, accumulate))
#else           /* one group a tile (X8_NG = 1) */
#define XT(MR) (!act8 ? xtile(wt, MR, 1, wg, gstride, x, r0 + i0, yt, ys, nr, accumulate)         \
                : xtile_act8(wt, MR, wg, x, r0 + i0, yt, ys, nr, accumulate))
#endif
                switch (mr) {
                case 1: XT(1); break;
                case 2: XT(2); break;
                case 3: XT(3); break;
#if X8_MR > 4
                case 4: XT(4); break;
                case 5: XT(5); break;
#endif
                default: XT(X8_MR); break;
                }
#undef XT
                g += ng;
            }
        }
    }
}

/* ---- tile walkers ------------------------------------------------------------------------ */

/* Calls TILE(MR, NR) for constant MR in 1..6 and NR in 1..4 picked from runtime mr, nr. */
#define NR_SWITCH(MR, nr, TILE)                                                               \
    switch (nr) {                                                                             \
    case 1: TILE(MR, 1); break; case 2: TILE(MR, 2); break;                                   \
    case 3: TILE(MR, 3); break; default: TILE(MR, 4); break;                                  \
    }
#define TILE_SWITCH(mr, nr, TILE)                                                             \
    switch (mr) {                                                                             \
    case 1: NR_SWITCH(1, nr, TILE) break; case 2: NR_SWITCH(2, nr, TILE) break;               \
    case 3: NR_SWITCH(3, nr, TILE) break; case 4: NR_SWITCH(4, nr, TILE) break;               \
    case 5: NR_SWITCH(5, nr, TILE) break; default: NR_SWITCH(6, nr, TILE) break;              \
    }

/* Output-tile loop shared by all types: panels of weight rows, then MR-row strips of x, then
 * NR-wide tiles across the panel. Decode-shaped strips (one row of x) use 4 weight rows. */
#define WALK(TILE_CALL)                                                                       \
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {                                               \
        int64_t j1 = j0 + PANEL < n ? j0 + PANEL : n;                                         \
        for (int64_t i0 = 0; i0 < m; i0 += PF_MR) {                                           \
            int mr = m - i0 < PF_MR ? (int)(m - i0) : PF_MR;                                  \
            int nr_max = mr == 1 ? 4 : PF_NR;                                                 \
            for (int64_t j = j0; j < j1; j += nr_max) {                                       \
                int nr = j1 - j < nr_max ? (int)(j1 - j) : nr_max;                            \
                TILE_SWITCH(mr, nr, TILE_CALL)                                                \
            }                                                                                 \
        }                                                                                     \
    }

AI void gemm_float(int wt, const void *w, size_t ws, const slm_act *x, int64_t r0, float *y,
                   size_t ys, int64_t m, int64_t n, int accumulate) {
    const int64_t k = x->k;
#define FTILE(MR, NR) ftile(wt, MR, NR, (const uint8_t *)w + j * ws, ws, x->f + (r0 + i0) * k, \
                            y + i0 * ys + j, ys, k, accumulate)
    WALK(FTILE)
#undef FTILE
}

AI void gemm_quant(int wt, const void *w, size_t ws, const slm_act *x, int64_t r0, float *y,
                   size_t ys, int64_t m, int64_t n, int accumulate) {
    if (x->qi && r0 % 8 == 0) {
        gemm_quant8(wt, w, ws, x, r0, y, ys, m, n, accumulate);
        return;
    }
#define QTILE(MR, NR) qtile(wt, MR, NR, (const uint8_t *)w + j * ws, ws, x, r0 + i0, \
                            y + i0 * ys + j, ys, accumulate)
    WALK(QTILE)
#undef QTILE
}

#define GEMM_AVX2(name, wt, body)                                                             \
    static void gemm_##name##_avx2(const void *w, size_t ws, const slm_act *x, int64_t i0,   \
                                   float *y, size_t ys, int64_t m, int64_t n, int acc) {      \
        body(wt, w, ws, x, i0, y, ys, m, n, acc);                                             \
    }
GEMM_AVX2(f32, SLM_F32, gemm_float)
GEMM_AVX2(f16, SLM_F16, gemm_float)
GEMM_AVX2(bf16, SLM_BF16, gemm_float)
GEMM_AVX2(q8_0, SLM_Q8_0, gemm_quant)
GEMM_AVX2(q4_0, SLM_Q4_0, gemm_quant)
GEMM_AVX2(q4_1, SLM_Q4_1, gemm_quant)
GEMM_AVX2(q8_0x8, SLM_Q8_0_X8, gemm_x8)
GEMM_AVX2(q4_0x8, SLM_Q4_0_X8, gemm_x8)
GEMM_AVX2(q4_1x8, SLM_Q4_1_X8, gemm_x8)

/* ---- probes ------------------------------------------------------------------------------- */

static uint64_t probe_read_avx2(const void *p, size_t bytes) {
    const __m256i *v = p;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < bytes / 32; i += 4) {
        a = _mm256_xor_si256(a, _mm256_load_si256(v + i));
        b = _mm256_xor_si256(b, _mm256_load_si256(v + i + 1));
        c = _mm256_xor_si256(c, _mm256_load_si256(v + i + 2));
        d = _mm256_xor_si256(d, _mm256_load_si256(v + i + 3));
    }
    __m256i r = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(r, 0) ^ (uint64_t)_mm256_extract_epi64(r, 3);
}

/* The machine's int8 dot peak, PROBE_INT8_DOTS independent 32-product steps per round (64 ops
 * each). AVX2: maddubs (u8 x s8 -> int16 pairs) added in int16, the cheapest step there is (the
 * Q4 kernels on int8 blocks take it, widening once a block; the ggml-style step, a madd by ones
 * after each maddubs, and our int16 step, vpmaddwd + add, take two multiplies per 32 products
 * and reach at most half of it on cores with one vector multiplier, such as Zen 1). VNNI: one
 * vpdpbusd per step. The inputs pass through an empty asm before each half of the round:
 * without it the compiler computes the 4 distinct steps once and the "8" steps are 4 (it did,
 * and the probe read twice the true peak). */
static int64_t probe_int8_avx2(int64_t iters) {
    _Static_assert(PROBE_INT8_DOTS == 8, "probe_int8_avx2 is unrolled for 8 dots");
    const __m256i w = _mm256_set1_epi8(7);
    /* named registers, not arrays: 8 accumulators + 4 inputs + 1 constant fit in 16 ymm */
    __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(2), x2 = _mm256_set1_epi8(3), x3 = _mm256_set1_epi8(4);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
#ifdef SLM_VNNI
#define DOT(acc, xv) acc = _mm256_dpbusd_epi32(acc, w, xv)
#else               /* the int16 sums wrap: the probe only needs them computed */
#define DOT(acc, xv) acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(w, xv))
#endif
    for (int64_t it = 0; it < iters; it++) {
        __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));
        DOT(a0, x0); DOT(a1, x1); DOT(a2, x2); DOT(a3, x3);
        __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));
        DOT(a4, x0); DOT(a5, x1); DOT(a6, x2); DOT(a7, x3);
    }
#undef DOT
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                 _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
    return hsum8i(s);
}

#ifdef SLM_VNNI
const slm_kernels slm_kernels_avx512vnni = {
    .name = "avx512vnni",
    .repack = 1,
#else
const slm_kernels slm_kernels_avx2 = {
    .name = "avx2",
    .repack = 1,
#endif
    .quantize_act = quantize_act_avx2, .quantize_act8 = quantize_act8_avx2,
    .gemm_f32 = gemm_f32_avx2, .gemm_f16 = gemm_f16_avx2, .gemm_bf16 = gemm_bf16_avx2,
    .gemm_q8_0 = gemm_q8_0_avx2, .gemm_q4_0 = gemm_q4_0_avx2, .gemm_q4_1 = gemm_q4_1_avx2,
    .gemm_q8_0x8 = gemm_q8_0x8_avx2, .gemm_q4_0x8 = gemm_q4_0x8_avx2, .gemm_q4_1x8 = gemm_q4_1x8_avx2,
    .attend = slm_attend_avx2, .silu_mul = slm_silu_mul_avx2,
    .probe_read = probe_read_avx2, .probe_int8 = probe_int8_avx2,
};
