/* blocks.h - on-disk block layouts (ggml-compatible) and scalar fp16 / bf16 conversions.
 *
 * Quantised rows are made of blocks of QK = 32 values. Weight blocks use ggml's byte layout so
 * GGUF tensors can be used as they are.
 */
#ifndef SLMKIT_BLOCKS_H
#define SLMKIT_BLOCKS_H

#include <stdint.h>
#include <string.h>

#define QK 32

/* x[j] = d * qs[j] */
typedef struct {
    uint16_t d;             /* fp16 scale */
    int8_t   qs[QK];        /* [32] signed values */
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");

/* x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8) */
typedef struct {
    uint16_t d;             /* fp16 scale */
    uint8_t  qs[QK / 2];    /* [16] two nibbles each: low = element j, high = element j + 16 */
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");

/* x[j] = d * (qs[j] & 15) + m, x[j + 16] = d * (qs[j] >> 4) + m */
typedef struct {
    uint16_t d;             /* fp16 scale */
    uint16_t m;             /* fp16 minimum */
    uint8_t  qs[QK / 2];    /* [16] nibbles as in block_q4_0 */
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must be 20 bytes");

/* ---- repacked layouts (made at load time by slm_repack, never stored in files) -------------
 *
 * Eight weight rows interleaved block by block: a group holds block b of rows 8g .. 8g+7, so one
 * vector lane per row and a pass over a block gives 8 outputs at once. The values are arranged
 * so that a 32-byte load widens to int16 with shifts and masks only (no shuffles): pair p of a
 * row (values 2p and 2p+1) sits in two adjacent 16-bit lanes, lane 2r + h holding row r's value
 * 2p + h, and one activation pair broadcast to all lanes multiplies 8 rows at once.
 *
 * Q4 (qs as 64 uint16 words w[t*16 + 2r + h], t = 0..3): nibble n (bits 4n .. 4n+3) of word
 * (t, r, h) is row r's value 2(4t + n) + h, as stored (0..15: Q4_0's -8 is applied per block
 * through the activation sum, as Q4_1's minimum is).
 * Q8 (qs as 128 words w[t*16 + 2r + h], t = 0..7): low byte = row r's value 8(t/2) + 2(t%2) + h,
 * high byte = that value + 4. In both, the 4 bytes of row r in a 32-byte load (Q4: masked or
 * shifted and masked) hold 4 of its values in the order of int8 activation blocks (ACT8_ORDER,
 * kernels.h), for u8 x s8 quad dots. */
typedef struct {
    uint16_t d[8];          /* [8 rows] fp16 scales */
    uint8_t  qs[128];       /* [4][16] words of 4 nibbles */
} block_q4_0x8;
_Static_assert(sizeof(block_q4_0x8) == 8 * sizeof(block_q4_0), "block_q4_0x8 is 8 blocks");

typedef struct {
    uint16_t d[8];          /* [8 rows] fp16 scales */
    uint16_t m[8];          /* [8 rows] fp16 minimums */
    uint8_t  qs[128];       /* [4][16] words of 4 nibbles */
} block_q4_1x8;
_Static_assert(sizeof(block_q4_1x8) == 8 * sizeof(block_q4_1), "block_q4_1x8 is 8 blocks");

typedef struct {
    uint16_t d[8];          /* [8 rows] fp16 scales */
    int8_t   qs[256];       /* [8][16] words of 2 bytes */
} block_q8_0x8;
_Static_assert(sizeof(block_q8_0x8) == 8 * sizeof(block_q8_0), "block_q8_0x8 is 8 blocks");

/* Activations (internal, never stored) are quantised on the fly to int16 per block of 32 values
 * (see slm_act in kernels.h): x[j] ~ d * q[j], d = amax / 32767. int8 activations (ggml's Q8_0)
 * lose the small values of a block that holds an outlier channel: SmolLM2's logits moved by 2.8%
 * against float64 and its greedy text diverged after 9 tokens. int16 keeps ~15 bits. On AVX2 an
 * int16 x int16 dot (two vpmaddwd per block) costs the same multiplier uops as an int8 one
 * (vpmaddubsw + vpmaddwd), so the precision is free there; with VNNI, vpdpbusd does twice the
 * int8 products of vpdpwssd's int16 ones, which is what prefill_act="int8" buys (kernels.h). */
#define QK_ACT_MAX 32767

/* ---- scalar conversions (portable; the AVX2 file uses F16C for whole vectors) ---------------- */

static inline uint32_t slm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float slm_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float slm_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return slm_bits_f32(sign | 0x7f800000u | (m << 13));   /* inf / nan */
    if (e != 0) return slm_bits_f32(sign | ((e + 112) << 23) | (m << 13)); /* normal */
    /* zero or subnormal: m * 2^-24, exact in float */
    return slm_bits_f32(sign | slm_f32_bits((float)m * 5.9604644775390625e-8f));
}

/* Round to nearest even, like numpy's astype(float16) and F16C's vcvtps2ph. */
static inline uint16_t slm_fp32_to_fp16(float f) {
    uint32_t x = slm_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); /* nan stays nan */
    if (ax >= 0x477ff000u) return sign | 0x7c00;          /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                              /* normal half (>= 2^-14) */
        uint32_t r = ax - 0x38000000u;                    /* rebias exponent 127 -> 15 */
        r += 0xfff + ((r >> 13) & 1);                     /* round mantissa to even */
        return sign | (uint16_t)(r >> 13);
    }
    if (ax < 0x33000000u) return sign;                    /* <= 2^-25: rounds to zero */
    /* subnormal half: q = value / 2^-24 = mant * 2^(e - 126), rounded to even */
    uint32_t e = ax >> 23, mant = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;                             /* 14 .. 24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    q += (rem > half) || (rem == half && (q & 1));
    return sign | (uint16_t)q;
}

static inline float slm_bf16_to_fp32(uint16_t h) { return slm_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; nan stays a (quiet) nan. */
static inline uint16_t slm_fp32_to_bf16(float f) {
    uint32_t x = slm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

#endif
