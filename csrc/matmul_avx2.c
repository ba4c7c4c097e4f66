/* matmul_avx2.c - AVX2 + FMA + F16C matmul kernels (x86-64 only; compiled with -mavx2 -mfma
 * -mf16c, chosen at run time by dispatch.c).
 *
 * Each gemm walks the output in register tiles of MR activation rows x NR weight rows: a weight
 * block is loaded (and unpacked) once per tile and reused for MR rows of x, an activation block
 * once and reused for NR weight rows. Decode (m = 1) uses 1 x 4 tiles, which keeps four
 * independent weight streams in flight; prefill uses 4 x 2 tiles. Weight rows are visited in
 * panels of PANEL rows so a panel stays in L2 while every tile of x passes over it.
 *
 * Integer dots: _mm256_maddubs_epi16 multiplies unsigned by signed bytes. Q4 nibbles are
 * already unsigned (0..15): the -8 of Q4_0 and the +m of Q4_1 are applied per block through
 * s = d_x * sum(q_x). Q8_0 weights are signed, so the sign of w moves onto x (|w| * sign(x, w)).
 */
#include <immintrin.h>
#include "kernels.h"

#define AI static inline __attribute__((always_inline))
#ifndef PF_MR
#define PF_MR 4     /* prefill tile: activation rows */
#endif
#ifndef PF_NR
#define PF_NR 2     /* prefill tile: weight rows */
#endif
#ifndef PANEL
#define PANEL 16    /* weight rows per panel: a multiple of every NR below */
#endif

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* ---- activation quantisation (bit-identical to quantize_act_generic) --------------------- */

/* Packs 4 x 8 int32 to 32 int8 in element order (saturating). */
AI __m256i pack32_epi8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);   /* undo packs' lane mix */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, order);
}

static void quantize_act_avx2(const float *x, block_q8x2 *y, int64_t k) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    const __m256 fine = _mm256_set1_ps(256.0f);
    const __m256i lim = _mm256_set1_epi8(-127);
    const int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        float buf[QK];                            /* [32] zero-padded tail block */
        const float *v = x + b * QK;
        if (b * QK + QK > k) {
            for (int j = 0; j < QK; j++) buf[j] = b * QK + j < k ? v[j] : 0.0f;
            v = buf;
        }
        __m256 vv[4];                             /* [4] x 8 values */
        for (int u = 0; u < 4; u++) vv[u] = _mm256_loadu_ps(v + 8 * u);
        __m256 am = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signbit, vv[0]), _mm256_andnot_ps(signbit, vv[1])),
                                  _mm256_max_ps(_mm256_andnot_ps(signbit, vv[2]), _mm256_andnot_ps(signbit, vv[3])));
        float amax = hmax8(am);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 mul = _mm256_set1_ps(id);
        __m256i ih[4], il[4];                     /* [4] x 8 coarse and fine values */
        for (int u = 0; u < 4; u++) {
            __m256 t = _mm256_mul_ps(vv[u], mul), h = _mm256_round_ps(t, rnd);
            ih[u] = _mm256_cvtps_epi32(h);
            il[u] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(t, h), fine), rnd));
        }
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(ih[0], ih[1]), _mm256_add_epi32(ih[2], ih[3]));
        _mm256_storeu_si256((__m256i *)y[b].qh, pack32_epi8(ih[0], ih[1], ih[2], ih[3]));
        __m256i ql = _mm256_max_epi8(pack32_epi8(il[0], il[1], il[2], il[3]), lim);   /* -128 -> -127 */
        _mm256_storeu_si256((__m256i *)y[b].ql, ql);
        /* sum of the clipped fine values: widen the 32 bytes through a signed madd */
        __m256i lsum = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), ql), _mm256_set1_epi16(1));
        y[b].d = d * (1.0f / 256.0f);
        y[b].s = y[b].d * (float)(256 * hsum8i(sum) + hsum8i(lsum));
    }
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

/* y[MR, NR] tile of dots of float rows x[i] (stride xs bytes) with weight rows w[j]. */
AI void ftile(int wt, int MR, int NR, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
              float *y, size_t ys, int64_t k) {
    __m256 acc[4][4];                              /* [MR][NR] accumulators */
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= k; t += 8) {
        __m256 wv[4];                              /* [NR] 8 weights each */
        for (int j = 0; j < NR; j++) wv[j] = load_w8(wt, w + j * ws, t);
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps((const float *)(x + i * xs) + t);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float s = hsum8(acc[i][j]);
            for (int64_t u = t; u < k; u++) s += load_w1(wt, w + j * ws, u) * ((const float *)(x + i * xs))[u];
            y[i * ys + j] = s;
        }
}

/* ---- quantised weights (Q8_0, Q4_0, Q4_1) x block_q8x2 activations --------------------- */

/* y[MR, NR] tile over nb blocks; x rows are xsb blocks apart. */
AI void qtile(int wt, int MR, int NR, const uint8_t *w, size_t ws, const block_q8x2 *x, size_t xsb,
              float *y, size_t ys, int64_t nb) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i fine = _mm256_set1_epi16(256);
    const __m256i low4 = _mm256_set1_epi8(15);
    __m256 acc[4][4];                              /* [MR][NR] accumulators */
    __m128 off[4];                                 /* [NR] Q4 offset sums, lane i = x row i */
    for (int j = 0; j < NR; j++) {
        off[j] = _mm_setzero_ps();
        for (int i = 0; i < MR; i++) acc[i][j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[4], wa[4];                      /* [NR] weight bytes, |w| for Q8_0 */
        __m256 dw[4];                              /* [NR] weight scales */
        float ow[4];                               /* [NR] per-block offset factor (Q4) */
        for (int j = 0; j < NR; j++) {
            const uint8_t *row = w + j * ws;
            if (wt == SLM_Q8_0) {
                const block_q8_0 *bw = (const block_q8_0 *)row + b;
                wq[j] = _mm256_loadu_si256((const __m256i *)bw->qs);
                wa[j] = _mm256_sign_epi8(wq[j], wq[j]);
                dw[j] = _mm256_set1_ps(_cvtsh_ss(bw->d));
            } else if (wt == SLM_Q4_0) {
                const block_q4_0 *bw = (const block_q4_0 *)row + b;
                __m128i v = _mm_loadu_si128((const __m128i *)bw->qs);
                wq[j] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), low4);
                float d = _cvtsh_ss(bw->d);
                dw[j] = _mm256_set1_ps(d);
                ow[j] = -8.0f * d;
            } else {
                const block_q4_1 *bw = (const block_q4_1 *)row + b;
                __m128i v = _mm_loadu_si128((const __m128i *)bw->qs);
                wq[j] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), low4);
                dw[j] = _mm256_set1_ps(_cvtsh_ss(bw->d));
                ow[j] = _cvtsh_ss(bw->m);
            }
        }
        for (int i = 0; i < MR; i++) {
            const block_q8x2 *bx = x + i * xsb + b;
            __m256i xh = _mm256_loadu_si256((const __m256i *)bx->qh);
            __m256i xl = _mm256_loadu_si256((const __m256i *)bx->ql);
            __m256 dx = _mm256_set1_ps(bx->d);
            for (int j = 0; j < NR; j++) {
                __m256i ph, pl;                    /* int16 pair sums of w * qh and w * ql */
                if (wt == SLM_Q8_0) {
                    ph = _mm256_maddubs_epi16(wa[j], _mm256_sign_epi8(xh, wq[j]));
                    pl = _mm256_maddubs_epi16(wa[j], _mm256_sign_epi8(xl, wq[j]));
                } else {
                    ph = _mm256_maddubs_epi16(wq[j], xh);
                    pl = _mm256_maddubs_epi16(wq[j], xl);
                }
                /* 256 * ph + pl, summed to int32 lanes */
                __m256i p = _mm256_add_epi32(_mm256_madd_epi16(ph, fine), _mm256_madd_epi16(pl, ones));
                __m256 s = _mm256_cvtepi32_ps(p);
                acc[i][j] = _mm256_fmadd_ps(s, _mm256_mul_ps(dx, dw[j]), acc[i][j]);
            }
        }
        if (wt != SLM_Q8_0) {
            /* sum over blocks of ow * s_x, for the MR rows at once */
            __m128 sx = _mm_setr_ps(x[b].s, MR > 1 ? x[xsb + b].s : 0.0f,
                                    MR > 2 ? x[2 * xsb + b].s : 0.0f, MR > 3 ? x[3 * xsb + b].s : 0.0f);
            for (int j = 0; j < NR; j++) off[j] = _mm_fmadd_ps(_mm_set1_ps(ow[j]), sx, off[j]);
        }
    }
    for (int j = 0; j < NR; j++) {
        float o[4];                                /* [4] offsets per x row */
        _mm_storeu_ps(o, off[j]);
        for (int i = 0; i < MR; i++) y[i * ys + j] = hsum8(acc[i][j]) + o[i];
    }
}

/* ---- tile walkers ------------------------------------------------------------------------ */

/* Calls TILE(MR, NR) for constant MR in 1..4 and NR in 1..4 picked from runtime mr, nr. */
#define TILE_SWITCH(mr, nr, TILE)                                                             \
    switch ((mr) * 8 + (nr)) {                                                                \
    case 9: TILE(1, 1); break;  case 10: TILE(1, 2); break;                                   \
    case 11: TILE(1, 3); break; case 12: TILE(1, 4); break;                                   \
    case 17: TILE(2, 1); break; case 18: TILE(2, 2); break;                                   \
    case 19: TILE(2, 3); break; case 20: TILE(2, 4); break;                                   \
    case 25: TILE(3, 1); break; case 26: TILE(3, 2); break;                                   \
    case 27: TILE(3, 3); break; case 28: TILE(3, 4); break;                                   \
    case 33: TILE(4, 1); break; case 34: TILE(4, 2); break;                                   \
    case 35: TILE(4, 3); break; default: TILE(4, 4); break;                                   \
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

AI void gemm_float(int wt, const void *w, size_t ws, const void *x, size_t xs, float *y,
                   size_t ys, int64_t m, int64_t n, int64_t k) {
#define FTILE(MR, NR) ftile(wt, MR, NR, (const uint8_t *)w + j * ws, ws, \
                            (const uint8_t *)x + i0 * xs, xs, y + i0 * ys + j, ys, k)
    WALK(FTILE)
#undef FTILE
}

AI void gemm_quant(int wt, const void *w, size_t ws, const void *x, size_t xs, float *y,
                   size_t ys, int64_t m, int64_t n, int64_t k) {
    int64_t nb = (k + QK - 1) / QK;
    size_t xsb = xs / sizeof(block_q8x2);
#define QTILE(MR, NR) qtile(wt, MR, NR, (const uint8_t *)w + j * ws, ws, \
                            (const block_q8x2 *)x + i0 * xsb, xsb, y + i0 * ys + j, ys, nb)
    WALK(QTILE)
#undef QTILE
}

#define GEMM_AVX2(name, wt, body)                                                             \
    static void gemm_##name##_avx2(const void *w, size_t ws, const void *x, size_t xs,        \
                                   float *y, size_t ys, int64_t m, int64_t n, int64_t k) {    \
        body(wt, w, ws, x, xs, y, ys, m, n, k);                                               \
    }
GEMM_AVX2(f32, SLM_F32, gemm_float)
GEMM_AVX2(f16, SLM_F16, gemm_float)
GEMM_AVX2(bf16, SLM_BF16, gemm_float)
GEMM_AVX2(q8_0, SLM_Q8_0, gemm_quant)
GEMM_AVX2(q4_0, SLM_Q4_0, gemm_quant)
GEMM_AVX2(q4_1, SLM_Q4_1, gemm_quant)

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

/* The int8 dot step every quantised kernel here is built from: maddubs (u8 x s8 -> pairs of
 * int16), madd by ones (-> int32), add. 32 multiply-adds, 64 ops. */
static int64_t probe_int8_avx2(int64_t iters) {
    _Static_assert(PROBE_INT8_DOTS == 8, "probe_int8_avx2 is unrolled for 8 dots");
    const __m256i ones = _mm256_set1_epi16(1), w = _mm256_set1_epi8(7);
    /* named registers, not arrays: 8 accumulators + 4 inputs + 2 constants fit in 16 ymm */
    __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(2), x2 = _mm256_set1_epi8(3), x3 = _mm256_set1_epi8(4);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
#define DOT(acc, xv) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones))
    for (int64_t it = 0; it < iters; it++) {
        __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));   /* no hoisting */
        DOT(a0, x0); DOT(a1, x1); DOT(a2, x2); DOT(a3, x3);
        DOT(a4, x0); DOT(a5, x1); DOT(a6, x2); DOT(a7, x3);
    }
#undef DOT
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                 _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
    return hsum8i(s);
}

const slm_kernels slm_kernels_avx2 = {
    .name = "avx2",
    .quantize_act = quantize_act_avx2,
    .gemm_f32 = gemm_f32_avx2, .gemm_f16 = gemm_f16_avx2, .gemm_bf16 = gemm_bf16_avx2,
    .gemm_q8_0 = gemm_q8_0_avx2, .gemm_q4_0 = gemm_q4_0_avx2, .gemm_q4_1 = gemm_q4_1_avx2,
    .probe_read = probe_read_avx2, .probe_int8 = probe_int8_avx2,
};
