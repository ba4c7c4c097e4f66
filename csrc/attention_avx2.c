/* attention_avx2.c - causal grouped-query attention with AVX2 + FMA (compiled with -mavx2 -mfma,
 * chosen at run time by dispatch.c; slm_attend_generic in attention.c is its reference).
 *
 * One call handles r query rows times hc query heads of one KV head: up to r*hc queries that
 * share every key and value they read.
 *   scores  S[q, p] = q . k_p * scale, 8 keys at a time: a block of 8 cached keys is transposed
 *           once (Kt[d] holds dimension d of the 8 keys), then each query needs one broadcast and
 *           one FMA per dimension for 8 scores, with no horizontal sums; 4 queries share each
 *           Kt[d] load.
 *   softmax per query over its own causal length, with a vectorised exp (below); positions past
 *           a query's length get probability 0.
 *   output  O[q, :] = sum_p P[q, p] v_p, 2 queries x 64 dimensions in 16 accumulators; each
 *           value row is loaded once for both queries.
 * Every query's sums run in the same order whatever r and hc are, so a row gives the same result
 * alone or in a block. int8 caches are dequantised 8 key rows at a time, and a value row's
 * scale is folded into its probability.
 */
#include <math.h>
#include <string.h>
#include "avx2_util.h"
#include "kernels.h"

#define KB 8          /* keys per transposed block */
#define QB 4          /* queries sharing a transposed key load */
#define DB 32         /* output dimensions per pass of the value loop: 2 x 4 accumulators */

/* e^x for x <= 0 (softmax arguments), relative error ~2e-7: x = n ln2 + r with |r| <= ln2/2,
 * e^r by a degree-6 polynomial (Taylor coefficients, Horner), 2^n by exponent bits. Below -87
 * the result flushes to 0, as e^x < 1e-38 adds nothing to a sum that holds a 1. */
AI __m256 exp_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);      /* ln2 high */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);         /* ln2 low */
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* out[n] = silu(gate) * up with e = e^-|g|: sigmoid(g) = 1/(1 + e) for g >= 0 and e/(1 + e)
 * below, so the exponential never overflows (and flushes to 0 for g < -87, where silu is -0).
 * Elementwise: out may alias gate or up. Lives here for exp_neg. */
void slm_silu_mul_avx2(const float *gate, const float *up, float *out, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), signbit = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp_neg(_mm256_or_ps(g, signbit));                      /* e^-|g| */
        __m256 num = _mm256_blendv_ps(one, e, g);                          /* sign of g picks */
        __m256 s = _mm256_div_ps(_mm256_mul_ps(g, num), _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    slm_silu_mul_generic(gate + i, up + i, out + i, n - i);
}

/* In place: x[0..n) -> softmax, x[n..n_pad) -> 0 (n_pad a multiple of 8, n >= 1). */
static void softmax_padded(float *x, int64_t n, int64_t n_pad) {
    int64_t n8 = n / 8 * 8;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int64_t p = 0; p < n8; p += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + p));
    float mx = hmax8(mv);
    for (int64_t p = n8; p < n; p++) mx = x[p] > mx ? x[p] : mx;
    for (int64_t p = n; p < n_pad; p++) x[p] = -INFINITY;          /* exp_neg(-inf) = 0 */
    __m256 m = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (int64_t p = 0; p < n_pad; p += 8) {
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + p), m));
        _mm256_storeu_ps(x + p, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));                /* sum >= 1: the max is e^0 */
    for (int64_t p = 0; p < n_pad; p += 8) _mm256_storeu_ps(x + p, _mm256_mul_ps(_mm256_loadu_ps(x + p), inv));
}

/* 8 int8 values as floats. */
AI __m256 load8_i8(const int8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

/* Kt[d*8 + t] = k[(p0 + t) * hd + d] for t < nk (zero for the rest of the block). */
static void transpose_keys(const float *k, int64_t p0, int64_t nk, int64_t hd, float *kt) {
    for (int64_t d = 0; d < hd; d += 8) {              /* 8x8 transposes */
        __m256 r[8];
        for (int t = 0; t < 8; t++) r[t] = t < nk ? _mm256_loadu_ps(k + (p0 + t) * hd + d) : _mm256_setzero_ps();
        __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
        __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
        __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
        __m256 a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
        __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
        __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
        __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
        __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
        float *o = kt + d * KB;
        _mm256_storeu_ps(o + 0 * KB, _mm256_permute2f128_ps(b0, b4, 0x20));
        _mm256_storeu_ps(o + 1 * KB, _mm256_permute2f128_ps(b1, b5, 0x20));
        _mm256_storeu_ps(o + 2 * KB, _mm256_permute2f128_ps(b2, b6, 0x20));
        _mm256_storeu_ps(o + 3 * KB, _mm256_permute2f128_ps(b3, b7, 0x20));
        _mm256_storeu_ps(o + 4 * KB, _mm256_permute2f128_ps(b0, b4, 0x31));
        _mm256_storeu_ps(o + 5 * KB, _mm256_permute2f128_ps(b1, b5, 0x31));
        _mm256_storeu_ps(o + 6 * KB, _mm256_permute2f128_ps(b2, b6, 0x31));
        _mm256_storeu_ps(o + 7 * KB, _mm256_permute2f128_ps(b3, b7, 0x31));
    }
}

/* Scores of up to QB queries (rows of qs, hd floats each) against 8 transposed keys. */
AI void score_block(int nq, const float *const *qs, const float *kt, int64_t hd, __m256 scale,
                    float *const *out) {
    __m256 acc[2][QB];                     /* even and odd dimensions: twice the FMA chains */
    for (int u = 0; u < nq; u++) acc[0][u] = acc[1][u] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 2)    /* hd is a multiple of 8 here */
        for (int e = 0; e < 2; e++) {
            __m256 kd = _mm256_loadu_ps(kt + (d + e) * KB);
            for (int u = 0; u < nq; u++)
                acc[e][u] = _mm256_fmadd_ps(_mm256_broadcast_ss(qs[u] + d + e), kd, acc[e][u]);
        }
    for (int u = 0; u < nq; u++)
        _mm256_storeu_ps(out[u], _mm256_mul_ps(_mm256_add_ps(acc[0][u], acc[1][u]), scale));
}

/* out rows (2 or 1 queries) = P rows . V over keys [0, n), dimensions [d0, d0 + 8*NV); V is
 * float, or int8 rows (v8) with scales vs. NV is a constant at every call, so the 2 x NV
 * accumulators stay in registers (a runtime count kept them on the stack). */
AI void value_block(int nq, int NV, const float *const *ps, const float *v, const int8_t *v8,
                    const float *vs, int64_t hd, int64_t n, int64_t d0, float *const *out) {
    __m256 acc[2][DB / 8];
    for (int u = 0; u < nq; u++)
        for (int t = 0; t < NV; t++) acc[u][t] = _mm256_setzero_ps();
    for (int64_t p = 0; p < n; p++) {
        __m256 w0 = _mm256_broadcast_ss(ps[0] + p), w1 = nq > 1 ? _mm256_broadcast_ss(ps[1] + p) : w0;
        if (v8) {                              /* fold the row's scale into the weights */
            __m256 sc = _mm256_broadcast_ss(vs + p);
            w0 = _mm256_mul_ps(w0, sc);
            w1 = _mm256_mul_ps(w1, sc);
        }
        for (int t = 0; t < NV; t++) {
            __m256 vv = v8 ? load8_i8(v8 + p * hd + d0 + 8 * t) : _mm256_loadu_ps(v + p * hd + d0 + 8 * t);
            acc[0][t] = _mm256_fmadd_ps(w0, vv, acc[0][t]);
            if (nq > 1) acc[1][t] = _mm256_fmadd_ps(w1, vv, acc[1][t]);
        }
    }
    for (int u = 0; u < nq; u++)
        for (int t = 0; t < NV; t++) _mm256_storeu_ps(out[u] + d0 + 8 * t, acc[u][t]);
}

void slm_attend_avx2(const slm_attn_args *a, int64_t i0, int64_t r, int64_t g, int64_t h0,
                        int64_t hc, float *scratch) {
    int64_t hd = a->head_dim;
    if (hd % 8 != 0) { slm_attend_generic(a, i0, r, g, h0, hc, scratch); return; }
    int64_t nq = r * hc;
    int64_t n_max = a->start_pos + i0 + r;                    /* keys the last row sees */
    int64_t n_pad = (n_max + KB - 1) / KB * KB;
    float *kt = scratch;                                      /* kt[hd, 8] */
    float *kf = kt + hd * KB;                                 /* kf[8, hd] dequantised keys */
    float *s = kf + hd * KB;                                  /* s[nq, n_pad] scores, then P */
    float *o = s + nq * n_pad;                                /* o[nq, hd] outputs */
    int q8 = a->kv_type != SLM_F32;
    int64_t row0 = g * a->max_seq;                            /* cache row of position 0 */
    const float *kg = q8 ? NULL : (const float *)a->k_cache + row0 * hd;   /* kg[max_seq, hd] */
    const float *vg = q8 ? NULL : (const float *)a->v_cache + row0 * hd;   /* vg[max_seq, hd] */
    const int8_t *k8 = q8 ? (const int8_t *)a->k_cache + row0 * hd : NULL;
    const int8_t *v8 = q8 ? (const int8_t *)a->v_cache + row0 * hd : NULL;
    const float *ks = q8 ? a->k_scale + row0 : NULL, *vs = q8 ? a->v_scale + row0 : NULL;
    const __m256 scale = _mm256_set1_ps(a->scale);

#define QUERY(qi) (a->q + (i0 + (qi) / hc) * a->q_stride + (h0 + (qi) % hc) * hd)
    /* scores, 8 keys at a time; a query's scores past its causal length are discarded below */
    for (int64_t p0 = 0; p0 < n_max; p0 += KB) {
        int64_t nk = n_max - p0 < KB ? n_max - p0 : KB;
        if (q8) {                                             /* dequantise the 8 rows first */
            for (int64_t t = 0; t < nk; t++) {
                __m256 sc = _mm256_broadcast_ss(ks + p0 + t);
                for (int64_t d = 0; d < hd; d += 8)
                    _mm256_storeu_ps(kf + t * hd + d, _mm256_mul_ps(load8_i8(k8 + (p0 + t) * hd + d), sc));
            }
            transpose_keys(kf, 0, nk, hd, kt);
        } else {
            transpose_keys(kg, p0, nk, hd, kt);
        }
        int64_t first = p0 - a->start_pos - i0;              /* rows before this see no key here */
        int64_t q0 = first > 0 ? first * hc : 0;
        for (int64_t qi = q0; qi < nq; qi += QB) {
            int nb = nq - qi < QB ? (int)(nq - qi) : QB;
            const float *qs[QB];
            float *outs[QB];
            for (int u = 0; u < nb; u++) {
                qs[u] = QUERY(qi + u);
                outs[u] = s + (qi + u) * n_pad + p0;
            }
            switch (nb) {
            case 1: score_block(1, qs, kt, hd, scale, outs); break;
            case 2: score_block(2, qs, kt, hd, scale, outs); break;
            case 3: score_block(3, qs, kt, hd, scale, outs); break;
            default: score_block(4, qs, kt, hd, scale, outs); break;
            }
        }
    }
    /* softmax per query over its own keys: row i sees start_pos + i + 1 of them */
    for (int64_t qi = 0; qi < nq; qi++) {
        int64_t n = a->start_pos + i0 + qi / hc + 1;
        softmax_padded(s + qi * n_pad, n, n_pad);
    }
    /* outputs: pairs of queries of the same row share their length */
    for (int64_t qi = 0; qi < nq; qi += 2) {
        int nb = nq - qi < 2 || (qi + 1) / hc != qi / hc ? 1 : 2;
        int64_t n = a->start_pos + i0 + qi / hc + 1;
        const float *ps[2] = { s + qi * n_pad, s + (qi + 1) * n_pad };
        float *outs[2] = { o + qi * hd, o + (qi + 1) * hd };
        for (int64_t d0 = 0; d0 < hd; d0 += DB) {
            int nv = (int)((hd - d0 < DB ? hd - d0 : DB) / 8);
#define VB(NQ, NV) value_block(NQ, NV, ps, vg, v8, vs, hd, n, d0, outs)
            if (nb == 2) { if (nv == 4) VB(2, 4); else if (nv == 3) VB(2, 3); else if (nv == 2) VB(2, 2); else VB(2, 1); }
            else         { if (nv == 4) VB(1, 4); else if (nv == 3) VB(1, 3); else if (nv == 2) VB(1, 2); else VB(1, 1); }
#undef VB
        }
        if (nb == 1) qi--;                                    /* step by one query */
    }
    /* written last, so out may alias q */
    for (int64_t qi = 0; qi < nq; qi++)
        memcpy(a->out + (i0 + qi / hc) * a->out_stride + (h0 + qi % hc) * hd, o + qi * hd,
               (size_t)hd * sizeof(float));
#undef QUERY
}
