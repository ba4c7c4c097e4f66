/* kernels.h - the table of matmul kernels that dispatch.c picks from at run time.
 *
 * Every variant (generic C, AVX2, ...) fills one slm_kernels table. slm_matmul only calls through
 * the table, so a variant is a file of its own plus one line in dispatch.c.
 */
#ifndef SLMKIT_KERNELS_H
#define SLMKIT_KERNELS_H

#include "internal.h"
#include "blocks.h"

/* Quantise one activation row x[k] to ceil(k/32) blocks y (tail zero-padded). Every variant
 * must give bit-identical blocks, so that SIMD and reference results can be compared tightly. */
typedef void (*slm_quantize_act_fn)(const float *x, block_q8x2 *y, int64_t k);

/* y[i*ys + j] = dot(x row i, w row j) for i < m, j < n.
 *   w: n rows of ws bytes in the weight type; x: m rows of xs bytes, float32 [k] for float
 *   weights or block_q8x2 [ceil(k/32)] for quantised weights. */
typedef void (*slm_gemm_fn)(const void *w, size_t ws, const void *x, size_t xs,
                            float *y, size_t ys, int64_t m, int64_t n, int64_t k);

/* Machine-limit probes (probe.c times them): read bytes (a multiple of 128) of p and return
 * something that depends on every byte; run iters rounds of PROBE_INT8_DOTS independent
 * u8 x s8 -> int32 dot steps of 32 bytes (maddubs + madd + add on AVX2) and return a value that
 * depends on all of them. */
#define PROBE_INT8_DOTS 8
typedef uint64_t (*slm_probe_read_fn)(const void *p, size_t bytes);
typedef int64_t (*slm_probe_int8_fn)(int64_t iters);

typedef struct slm_kernels {
    const char *name;
    slm_quantize_act_fn quantize_act;
    slm_gemm_fn gemm_f32, gemm_f16, gemm_bf16, gemm_q8_0, gemm_q4_0, gemm_q4_1;
    slm_probe_read_fn probe_read;
    slm_probe_int8_fn probe_int8;
} slm_kernels;

extern const slm_kernels slm_kernels_generic;    /* matmul.c */
#ifdef SLMKIT_HAVE_AVX2_SOURCES
extern const slm_kernels slm_kernels_avx2;       /* matmul_avx2.c */
#endif

/* The variant in use (dispatch.c); chosen on first call. */
const slm_kernels *slm_kernels_get(void);

#endif
