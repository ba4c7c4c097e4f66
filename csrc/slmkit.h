/* slmkit.h - the C API of slmkit's kernels.
 *
 * This file is the single source of truth for the Python binding: the cffi cdef is generated
 * from the block between the SLMKIT_CDEF_BEGIN / SLMKIT_CDEF_END markers, so everything inside it
 * must be plain C declarations that cffi understands (no macros, no static inline).
 *
 * Conventions
 *   - Matrices are row-major. A weight matrix W has shape [n, k]: n output rows of k inputs each,
 *     stored row after row in its weight type (see slm_row_size).
 *   - Activations are float32. x has shape [m, k]; y = x @ W^T has shape [m, n].
 *   - Quantised rows are made of blocks of 32 values (ggml layout, see blocks.h). A row whose
 *     length k is not a multiple of 32 is stored as ceil(k/32) blocks whose tail is zero-padded,
 *     so every format accepts every k.
 *   - Functions that can fail return 0 on success and a negative SLM_E* code otherwise.
 */
#ifndef SLMKIT_H
#define SLMKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SLMKIT_CDEF_BEGIN */

/* Weight storage types. The numbers are ggml's type ids, so GGUF tensors map directly. */
enum slm_type {
    SLM_F32  = 0,
    SLM_F16  = 1,
    SLM_Q4_0 = 2,   /* 32 x 4-bit, fp16 scale d:            x = d * (q - 8)        18 bytes */
    SLM_Q4_1 = 3,   /* 32 x 4-bit, fp16 scale d, fp16 min m: x = d * q + m          20 bytes */
    SLM_Q8_0 = 8,   /* 32 x int8,  fp16 scale d:            x = d * q              34 bytes */
    SLM_BF16 = 30,
    /* Q4_0 / Q4_1 / Q8_0 repacked by slm_repack: groups of 8 rows interleaved block by block,
     * the layout the kernels read fastest. Row size as the base type; n rows take ceil(n/8)*8. */
    SLM_Q4_0_X8 = 1002,
    SLM_Q4_1_X8 = 1003,
    SLM_Q8_0_X8 = 1008
};

enum slm_error {
    SLM_OK          = 0,
    SLM_E_TYPE      = -1,   /* unsupported weight type for this operation */
    SLM_E_SHAPE     = -2,   /* inconsistent sizes */
    SLM_E_NOMEM     = -3
};

/* ---- types and rows ------------------------------------------------------------------------ */

/* Bytes taken by one row of k values in `type` (k rounded up to whole blocks). */
size_t slm_row_size(int type, int64_t k);

/* Quantise n rows of k float32 values into `type` (any type above). dst holds n*slm_row_size. */
int slm_quantize(int type, const float *src, void *dst, int64_t n, int64_t k);

/* Dequantise n rows of k values stored in `type` back to float32. */
int slm_dequantize(int type, const void *src, float *dst, int64_t n, int64_t k);

/* The repacked type of a Q4_0, Q4_1 or Q8_0 weight (SLM_*_X8), or 0 for other types. */
int slm_repacked_type(int type);

/* Repack n rows of k values of `type` (Q4_0, Q4_1, Q8_0) into slm_repacked_type(type): dst holds
 * ceil(n/8)*8 * slm_row_size(type, k) bytes (missing rows of the last group are zero). */
int slm_repack(int type, const void *src, void *dst, int64_t n, int64_t k);

/* ---- CPU features and kernel selection ------------------------------------------------------ */

/* Name of the kernel variant in use: "avx2", "generic", ... */
const char *slm_kernel_name(void);

/* Force a variant ("generic", "avx2"); returns 0, or SLM_E_TYPE if unknown or unsupported here.
 * Used by the tests to compare each SIMD kernel with its plain-C reference. */
int slm_set_kernel(const char *name);

/* ---- thread pool ---------------------------------------------------------------------------- */

typedef struct slm_pool slm_pool;

/* A pool of n_threads workers (the caller counts as one: n_threads=1 starts no thread). */
slm_pool *slm_pool_new(int n_threads);
void      slm_pool_free(slm_pool *pool);
int       slm_pool_size(const slm_pool *pool);

/* Number of physical cores (falls back to logical CPUs where unknown). */
int slm_physical_cores(void);

/* ---- matmul --------------------------------------------------------------------------------- */

/* y[m, n] = x[m, k] @ W[n, k]^T, W stored in wtype. For quantised W the rows of x are quantised
 * on the fly to int16 blocks (x ~ d * q per 32 values, d = amax / 32767, so outlier channels do
 * not wipe out the small values of their block) and the dot products run in integers. pool may
 * be NULL (one thread).
 * y must not alias x. */
int slm_matmul(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
               int64_t m, int64_t n, int64_t k);

/* slm_matmul with the activation precision chosen: act_bits 16 (as slm_matmul), or 8 for
 * repacked weights (SLM_Q4_0_X8, SLM_Q4_1_X8, SLM_Q8_0_X8): int8 blocks (d = amax / 127, ggml's and
 * llama.cpp's precision) and u8 x s8 dot products, twice as many per instruction as int16 where
 * the CPU has VNNI, at the cost of 1-5% in SmolLM2's logits. SLM_E_TYPE for other combinations. */
int slm_matmul_act(slm_pool *pool, int wtype, const void *w, const float *x, float *y,
                   int64_t m, int64_t n, int64_t k, int act_bits);

/* ---- machine-limit probes (for benchmarks: kernel speed as a fraction of these) ----------- */

/* Streaming-read bandwidth in GB/s: the pool's threads read disjoint parts of a buffer of
 * `bytes` (make it much larger than the last-level cache) with the active variant's widest
 * loads; best of `reps` passes. Returns a negative SLM_E* code on failure. */
double slm_probe_read_gbps(slm_pool *pool, int64_t bytes, int reps);

/* Peak int8 dot-product rate in GOPS (2 ops per multiply-add), all pool threads together: each
 * runs `iters` rounds of independent u8 x s8 -> int32 dot steps (on AVX2: maddubs + madd + add
 * per 32 products). Best of `reps`. */
double slm_probe_int8_gops(slm_pool *pool, int64_t iters, int reps);

/* ---- norms, activations, elementwise -------------------------------------------------------- */

/* out[m, d] = x / sqrt(mean(x^2) + eps) * weight, per row. out may alias x. */
void slm_rmsnorm(const float *x, const float *weight, float *out, int64_t m, int64_t d, float eps);

/* out[n] = silu(gate) * up, elementwise over n values. out may alias gate or up. */
void slm_silu_mul(const float *gate, const float *up, float *out, int64_t n);

/* x[n] += y[n] */
void slm_add(float *x, const float *y, int64_t n);

/* In-place softmax of each of m rows of length n (float32, max-subtracted). */
void slm_softmax(float *x, int64_t m, int64_t n);

/* ---- RoPE and attention with a KV cache ----------------------------------------------------- */

/* Rotate x[m, n_heads, head_dim] in place; row i sits at position pos[i].
 * interleaved=1: pairs (2j, 2j+1) (Meta / llama2.c / GGUF order);
 * interleaved=0: pairs (j, j + head_dim/2) (Hugging Face "rotate_half" order).
 * Frequencies theta_j = pos * base^(-2j / head_dim). */
void slm_rope(float *x, const int32_t *pos, int64_t m, int64_t n_heads, int64_t head_dim,
              float base, int interleaved);

/* Causal grouped-query attention for m new rows at positions start_pos .. start_pos+m-1.
 *   q       [m, n_heads, head_dim]          (already rotated)
 *   k_new   [m, n_kv_heads, head_dim]       (already rotated) written to the cache at start_pos
 *   v_new   [m, n_kv_heads, head_dim]       written to the cache at start_pos
 *   k_cache [n_kv_heads, max_seq, head_dim]
 *   v_cache [n_kv_heads, max_seq, head_dim]
 *   out     [m, n_heads, head_dim]
 * Query head h reads KV head h / (n_heads / n_kv_heads). Row i attends to positions
 * 0 .. start_pos + i. Scores are scaled by 1/sqrt(head_dim); softmax in float32.
 * out may alias q. Returns SLM_E_SHAPE (writing nothing) for bad head counts or an overflow. */
int slm_attention(slm_pool *pool, const float *q, const float *k_new, const float *v_new,
                  float *k_cache, float *v_cache, float *out,
                  int64_t m, int64_t start_pos, int64_t max_seq,
                  int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);

/* ---- a whole Llama-family forward pass (llama.c) ----------------------------------------- */

/* A weight matrix [n, k]: n rows of k values in `type` (n and k follow from the config). */
typedef struct {
    int type;               /* enum slm_type */
    const void *data;       /* [n, slm_row_size(type, k)] bytes; must outlive the model */
    const float *bias;      /* [n], or NULL */
} slm_weight;

typedef struct {
    const float *attn_norm; /* [dim] */
    const float *ffn_norm;  /* [dim] */
    slm_weight q;           /* [n_heads*head_dim, dim] */
    slm_weight k, v;        /* [n_kv_heads*head_dim, dim] */
    slm_weight o;           /* [dim, n_heads*head_dim] */
    slm_weight gate, up;    /* [ffn_dim, dim] */
    slm_weight down;        /* [dim, ffn_dim] */
} slm_llama_layer;

typedef struct {
    int64_t dim, ffn_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    float norm_eps, rope_base;
    int rope_interleaved;   /* 1: pairs (2j, 2j+1); 0: pairs (j, j + head_dim/2) */
    int kv_type;            /* KV cache: SLM_F32, or SLM_Q8_0 = int8 rows, one float scale each */
    int keep_layout;        /* 1: run Q4_0/Q4_1/Q8_0 weights as stored; 0: repack them (below)
                               when the kernel variant in use runs repacked weights faster */
    int prefill_act_bits;   /* 16 (or 0): int16 activation blocks everywhere; 8: int8 ones for
                               steps of 8 or more rows (prefill) on repacked weights of the
                               layers (not the output head; see slm_matmul_act: faster with
                               VNNI, 1-5% of SmolLM2's logits) */
} slm_llama_config;

typedef struct slm_llama slm_llama;

/* Describe a model: embed [vocab, dim], norm [dim], head [vocab, dim] (may be the embedding),
 * layers [n_layers]. The weights stay where they are (memory-mapped files), except that, unless
 * cfg->keep_layout, the Q4_0/Q4_1/Q8_0 matrices of the layers and the head are repacked once into
 * the model's own memory (slm_repack: the layout the kernels read fastest; the mapped originals
 * are then no longer read, but for the embedding rows of the tokens fed). Writes *out and
 * returns 0, or SLM_E_SHAPE / SLM_E_TYPE (unsupported weight type, missing tensor) / SLM_E_NOMEM. */
int slm_llama_new(const slm_llama_config *cfg, const slm_weight *embed, const float *norm,
                  const slm_weight *head, const slm_llama_layer *layers, slm_llama **out);
void slm_llama_free(slm_llama *model);

/* What the model runs, for reports: the number of matrices repacked at load, and the activation
 * bits of prefill steps (8 only when the config asks for them and some layer matrix is
 * repacked). */
int slm_llama_repacked(const slm_llama *model);
int slm_llama_prefill_act_bits(const slm_llama *model);

/* Feed tokens[m] at positions start_pos .. start_pos+m-1: their keys and values go into the
 * caches (k_cache[l], v_cache[l]: [n_kv_heads, max_seq, head_dim] for every layer l, float32 or
 * int8 as the config's kv_type says; for int8, k_scale[l], v_scale[l]: [n_kv_heads, max_seq],
 * else NULL), and the logits of the last row ([vocab]), or of every row ([m, vocab]) when
 * all_logits, into logits. Returns SLM_E_SHAPE for a token id outside the vocabulary or a
 * context overflow. */
int slm_llama_forward(slm_llama *model, slm_pool *pool, const int32_t *tokens, int64_t m,
                      int64_t start_pos, void *const *k_cache, void *const *v_cache,
                      float *const *k_scale, float *const *v_scale, int64_t max_seq,
                      float *logits, int all_logits);

/* SLMKIT_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* SLMKIT_H */
