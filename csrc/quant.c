/* quant.c - row sizes, quantisation and dequantisation of weight rows (reference math).
 *
 * Quantisation follows ggml's reference formulas so that GGUF files written by slmkit and by
 * llama.cpp agree. Rows whose length k is not a multiple of 32 are stored as ceil(k/32) blocks and
 * quantised as if the missing tail values were 0.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include "internal.h"
#include "blocks.h"

size_t slm_row_size(int type, int64_t k) {
    if (k < 0) return 0;
    if (slm_x8_base(type)) type = slm_x8_base(type);   /* 8 rows of a group, 8 blocks a block */
    size_t nb = (size_t)((k + QK - 1) / QK);   /* blocks per row */
    switch (type) {
    case SLM_F32:  return (size_t)k * 4;
    case SLM_F16:
    case SLM_BF16: return (size_t)k * 2;
    case SLM_Q8_0: return nb * sizeof(block_q8_0);
    case SLM_Q4_0: return nb * sizeof(block_q4_0);
    case SLM_Q4_1: return nb * sizeof(block_q4_1);
    default:       return 0;
    }
}

/* Copy block b of row x[k] into buf[32], zero-padding past k. */
static const float *load_block(const float *x, int64_t k, int64_t b, float *buf) {
    int64_t j0 = b * QK;
    if (j0 + QK <= k) return x + j0;        /* whole block: no copy */
    for (int j = 0; j < QK; j++) buf[j] = j0 + j < k ? x[j0 + j] : 0.0f;
    return buf;
}

static void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k) {
    float buf[QK];                           /* [32] padded tail block */
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        const float *v = load_block(x, k, b, buf);
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = slm_fp32_to_fp16(d);
        for (int j = 0; j < QK; j++) y[b].qs[j] = (int8_t)roundf(v[j] * id);
    }
}

static void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k) {
    float buf[QK];                           /* [32] padded tail block */
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        const float *v = load_block(x, k, b, buf);
        /* the value of largest magnitude, with its sign, maps to -8 so the full range is used */
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < QK; j++)
            if (fabsf(v[j]) > amax) { amax = fabsf(v[j]); vmax = v[j]; }
        float d = vmax / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = slm_fp32_to_fp16(d);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (int)(v[j] * id + 8.5f), hi = (int)(v[j + QK / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void quantize_row_q4_1(const float *x, block_q4_1 *y, int64_t k) {
    float buf[QK];                           /* [32] padded tail block */
    for (int64_t b = 0; b < (k + QK - 1) / QK; b++) {
        const float *v = load_block(x, k, b, buf);
        float lo = v[0], hi = v[0];
        for (int j = 1; j < QK; j++) { lo = fminf(lo, v[j]); hi = fmaxf(hi, v[j]); }
        float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = slm_fp32_to_fp16(d);
        y[b].m = slm_fp32_to_fp16(lo);
        for (int j = 0; j < QK / 2; j++) {
            int a = (int)((v[j] - lo) * id + 0.5f), c = (int)((v[j + QK / 2] - lo) * id + 0.5f);
            a = a > 15 ? 15 : a;
            c = c > 15 ? 15 : c;
            y[b].qs[j] = (uint8_t)(a | (c << 4));
        }
    }
}

int slm_quantize(int type, const float *src, void *dst, int64_t n, int64_t k) {
    size_t rs = slm_row_size(type, k);
    if (rs == 0 && k != 0) return SLM_E_TYPE;
    if (n < 0 || k < 0) return SLM_E_SHAPE;
    if (type != SLM_F32 && type != SLM_F16 && type != SLM_BF16 && type != SLM_Q8_0 &&
        type != SLM_Q4_0 && type != SLM_Q4_1) return SLM_E_TYPE;
    for (int64_t r = 0; r < n; r++) {
        const float *x = src + r * k;                      /* [k] */
        void *row = (uint8_t *)dst + (size_t)r * rs;       /* [rs] bytes */
        switch (type) {
        case SLM_F32: memcpy(row, x, (size_t)k * 4); break;
        case SLM_F16:
            for (int64_t j = 0; j < k; j++) ((uint16_t *)row)[j] = slm_fp32_to_fp16(x[j]);
            break;
        case SLM_BF16:
            for (int64_t j = 0; j < k; j++) ((uint16_t *)row)[j] = slm_fp32_to_bf16(x[j]);
            break;
        case SLM_Q8_0: quantize_row_q8_0(x, row, k); break;
        case SLM_Q4_0: quantize_row_q4_0(x, row, k); break;
        case SLM_Q4_1: quantize_row_q4_1(x, row, k); break;
        }
    }
    return SLM_OK;
}

int slm_dequantize(int type, const void *src, float *dst, int64_t n, int64_t k) {
    size_t rs = slm_row_size(type, k);
    if (slm_x8_base(type) && n >= 0 && k >= 0) {     /* unpack each row, then as the base type */
        int base = slm_x8_base(type);
        int64_t nb = (k + QK - 1) / QK;
        if (nb == 0) return SLM_OK;
        size_t bs = rs / (size_t)nb;                 /* bytes of one base block */
        uint8_t *row = malloc(rs);                   /* [rs] one row in the base layout */
        if (!row) return SLM_E_NOMEM;
        for (int64_t r = 0; r < n; r++) {
            const uint8_t *grp = (const uint8_t *)src + (size_t)(r / 8) * 8 * rs;
            for (int64_t b = 0; b < nb; b++)
                slm_x8_unpack(type, grp + (size_t)b * 8 * bs, (int)(r % 8), row + (size_t)b * bs);
            slm_dequantize(base, row, dst + r * k, 1, k);
        }
        free(row);
        return SLM_OK;
    }
    if (type != SLM_F32 && type != SLM_F16 && type != SLM_BF16 && type != SLM_Q8_0 &&
        type != SLM_Q4_0 && type != SLM_Q4_1) return SLM_E_TYPE;
    if (n < 0 || k < 0) return SLM_E_SHAPE;
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *row = (const uint8_t *)src + (size_t)r * rs;   /* [rs] bytes */
        float *y = dst + r * k;                                        /* [k] */
        for (int64_t j = 0; j < k; j++) {
            int64_t b = j / QK, i = j % QK;
            switch (type) {
            case SLM_F32: memcpy(&y[j], row + j * 4, 4); break;
            case SLM_F16: { uint16_t h; memcpy(&h, row + j * 2, 2); y[j] = slm_fp16_to_fp32(h); break; }
            case SLM_BF16: { uint16_t h; memcpy(&h, row + j * 2, 2); y[j] = slm_bf16_to_fp32(h); break; }
            case SLM_Q8_0: {
                const block_q8_0 *blk = (const block_q8_0 *)row + b;
                y[j] = slm_fp16_to_fp32(blk->d) * (float)blk->qs[i];
                break;
            }
            case SLM_Q4_0: {
                const block_q4_0 *blk = (const block_q4_0 *)row + b;
                int q = i < QK / 2 ? (blk->qs[i] & 15) : (blk->qs[i - QK / 2] >> 4);
                y[j] = slm_fp16_to_fp32(blk->d) * (float)(q - 8);
                break;
            }
            case SLM_Q4_1: {
                const block_q4_1 *blk = (const block_q4_1 *)row + b;
                int q = i < QK / 2 ? (blk->qs[i] & 15) : (blk->qs[i - QK / 2] >> 4);
                y[j] = slm_fp16_to_fp32(blk->d) * (float)q + slm_fp16_to_fp32(blk->m);
                break;
            }
            }
        }
    }
    return SLM_OK;
}

/* ---- repacked layouts (see blocks.h) -------------------------------------------------------- */

int slm_repacked_type(int type) {
    return type == SLM_Q4_0 ? SLM_Q4_0_X8 : type == SLM_Q4_1 ? SLM_Q4_1_X8
         : type == SLM_Q8_0 ? SLM_Q8_0_X8 : 0;
}

/* Value j (0..31) of a Q4 block as stored: 0..15. */
static int nibble(const uint8_t *qs, int j) { return j < QK / 2 ? qs[j] & 15 : qs[j - QK / 2] >> 4; }

/* Q4 words: nibble n of word (t, r, h) is row r's value 2(4t + n) + h. */
static void pack_q4(const uint8_t *const qs[8], uint8_t *out) {
    for (int t = 0; t < 4; t++)
        for (int l = 0; l < 16; l++) {
            int r = l / 2, h = l % 2;
            uint16_t v = 0;
            for (int n = 0; n < 4; n++) v |= (uint16_t)(nibble(qs[r], 2 * (4 * t + n) + h) << (4 * n));
            memcpy(out + 2 * (t * 16 + l), &v, 2);
        }
}

static void unpack_q4(const uint8_t *in, int r, uint8_t *qs) {
    memset(qs, 0, QK / 2);
    for (int t = 0; t < 4; t++)
        for (int h = 0; h < 2; h++) {
            uint16_t v;
            memcpy(&v, in + 2 * (t * 16 + 2 * r + h), 2);
            for (int n = 0; n < 4; n++) {
                int j = 2 * (4 * t + n) + h, q = (v >> (4 * n)) & 15;
                qs[j % (QK / 2)] |= (uint8_t)(j < QK / 2 ? q : q << 4);
            }
        }
}

/* Q8 words: low byte of word (t, r, h) is row r's value 8(t/2) + 2(t%2) + h, high byte that
 * value + 4 (so each 4 bytes of a row hold values in ACT8_ORDER, like a masked Q4 load). */
static int q8_word_value(int t, int h) { return 8 * (t / 2) + 2 * (t % 2) + h; }

static void pack_q8(const int8_t *const qs[8], int8_t *out) {
    for (int t = 0; t < 8; t++)
        for (int l = 0; l < 16; l++) {
            int r = l / 2, v = q8_word_value(t, l % 2);
            out[2 * (t * 16 + l)] = qs[r][v];
            out[2 * (t * 16 + l) + 1] = qs[r][v + 4];
        }
}

static void unpack_q8(const int8_t *in, int r, int8_t *qs) {
    for (int t = 0; t < 8; t++)
        for (int h = 0; h < 2; h++) {
            int v = q8_word_value(t, h);
            qs[v] = in[2 * (t * 16 + 2 * r + h)];
            qs[v + 4] = in[2 * (t * 16 + 2 * r + h) + 1];
        }
}

/* A base block is its fp16 scale d (and Q4_1's minimum m), then qs; a repacked block holds the
 * 8 rows' d[8] (and m[8]), then its qs. Bytes before qs in a base block: */
static size_t head_bytes(int base) { return base == SLM_Q4_1 ? 4 : 2; }
_Static_assert(offsetof(block_q8_0x8, qs) == 8 * 2 && offsetof(block_q4_0x8, qs) == 8 * 2 &&
               offsetof(block_q4_1x8, m) == 8 * 2 && offsetof(block_q4_1x8, qs) == 8 * 4,
               "repacked blocks: d[8], m[8] (Q4_1), then qs");

void slm_x8_unpack(int type, const void *x8, int r, void *block) {
    int base = slm_x8_base(type);
    size_t head = head_bytes(base);
    const uint8_t *in = x8;
    uint8_t *o = block;
    memcpy(o, in + 2 * r, 2);                                   /* d */
    if (base == SLM_Q4_1) memcpy(o + 2, in + 16 + 2 * r, 2);   /* m */
    if (base == SLM_Q8_0) unpack_q8((const int8_t *)in + 8 * head, r, (int8_t *)o + head);
    else unpack_q4(in + 8 * head, r, o + head);
}

int slm_repack(int type, const void *src, void *dst, int64_t n, int64_t k) {
    if (!slm_repacked_type(type)) return SLM_E_TYPE;
    if (n < 0 || k < 0) return SLM_E_SHAPE;
    size_t rs = slm_row_size(type, k), head = head_bytes(type);
    int64_t nb = (k + QK - 1) / QK;
    size_t bs = nb ? rs / (size_t)nb : 0;                 /* bytes of one base block */
    static const block_q8_0 zero;                         /* a zero block (the largest) */
    for (int64_t g = 0; g < (n + 7) / 8; g++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *qs[8];                         /* [8 rows] qs of block b of each row */
            uint8_t *out = (uint8_t *)dst + (size_t)(g * 8) * rs + (size_t)b * 8 * bs;
            for (int r = 0; r < 8; r++) {
                const uint8_t *blk = g * 8 + r < n ? (const uint8_t *)src + (size_t)(g * 8 + r) * rs + b * bs
                                                   : (const uint8_t *)&zero;
                memcpy(out + 2 * r, blk, 2);                                  /* d */
                if (type == SLM_Q4_1) memcpy(out + 16 + 2 * r, blk + 2, 2);   /* m */
                qs[r] = blk + head;
            }
            if (type == SLM_Q8_0) pack_q8((const int8_t *const *)qs, (int8_t *)out + 8 * head);
            else pack_q4(qs, out + 8 * head);
        }
    return SLM_OK;
}
