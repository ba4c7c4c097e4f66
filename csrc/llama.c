/* llama.c - a whole forward pass of a Llama-family decoder (Llama, Mistral, Qwen2, SmolLM) in C.
 *
 * Python describes the weights once (slm_llama_new: pointers into the memory-mapped file; the
 * quantised matrices are repacked into 8-row interleaved groups, see blocks.h) and calls
 * slm_llama_forward for every prefill or decode step, so a token costs one call into C instead
 * of a dozen per layer.
 *
 * The pass runs as one team on the pool (slm_pool_team): every thread walks the same list of
 * steps and takes units of work from the step's counter (a unit = a range of weight rows times a
 * block of activation rows). A step begins once every unit of the step before it is done. There
 * is no barrier on threads: a thread the OS has not scheduled holds nobody up unless it holds a
 * unit, and when it runs again it skips the steps that others finished. Per layer:
 *
 *   input(rmsnorm)  -> q,k,v units: gemm, bias, RoPE; k and v are written straight into the cache
 *                   -> attention units (query row x KV head x slice of its query heads)
 *   input           -> o units: gemm added onto the residual x
 *   input(rmsnorm)  -> gate/up units: both gemms for the same rows, then silu(gate)*up
 *   input           -> down units: gemm added onto x
 *
 * "input" quantises the rows a step multiplies by (once, not once per weight). With one or two
 * rows (decode) every thread makes its own copy, which costs less than waiting for each other;
 * with more rows it is a step of its own whose units are blocks of rows.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#include "kernels.h"

#define PRIVATE_ROWS 2    /* inputs of at most this many rows are made by every thread */
#define INPUT_ROWS 16     /* rows per unit of an input step (a multiple of 8: whole groups) */
#define STEPS_PER_LAYER 9 /* at most: 4 inputs, qkv, attention, o, gate/up, down */
#define SPINS 2000        /* polls of a step's done count before yielding the core */
#define M_BLOCK 64        /* activation rows per unit (prefill) */
#define O_UNIT 32         /* weight rows per unit: o and down projections */
#define FFN_UNIT 64       /* gate/up rows per unit */
#define HEAD_UNIT 128     /* output-head rows per unit */
#define ATT_ROWS 16       /* query rows per attention unit (prefill) */
_Static_assert(O_UNIT % 8 == 0 && FFN_UNIT % 8 == 0 && HEAD_UNIT % 8 == 0,
               "units of weight rows must be whole groups of repacked rows");

typedef struct {
    _Atomic int64_t next;     /* next unit to claim */
    _Atomic int64_t done;     /* units finished */
    char pad[48];             /* one cache line per step */
} step_sync;

struct slm_llama {
    slm_llama_config cfg;
    slm_weight embed, head;
    const float *norm;              /* [dim] */
    slm_llama_layer *layers;        /* [n_layers] */
    pthread_mutex_t mu;             /* one forward at a time per model: the scratch is shared */
    /* scratch, grown on demand */
    int64_t cap_m, cap_ctx;
    int cap_threads;
    slm_act_buf in;                 /* shared step input [m, k_max] */
    slm_act_buf *own;               /* [cap_threads] private step inputs [PRIVATE_ROWS, k_max] */
    float *x;                       /* [m, dim] residual stream */
    float *q;                       /* [m, n_heads*head_dim] rotated queries, then attention out */
    float *g, *u;                   /* [m, ffn_dim] gate (then silu(gate)*up) and up */
    float *cos_sin;                 /* [m, 2, head_dim/2] RoPE cos then sin of each row */
    float *att;                     /* [cap_threads, att_floats] attention scratch */
    float *kv_rows;                 /* [cap_threads, M_BLOCK, head_dim] k/v rows before int8 */
    size_t att_floats;
    step_sync *steps;               /* [n_steps] counters of a forward pass */
    size_t n_steps;
    void **owned;                   /* [n_owned] repacked weights */
    int n_owned;
};

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

static int weight_ok(const slm_weight *w) {
    return w->data != NULL && slm_gemm_for(&slm_kernels_generic, w->type) != NULL;
}

/* Ask the OS to drop the resident pages of [p, p + bytes) that nothing here reads any more.
 * MADV_PAGEOUT keeps the contents (a later read faults them back in, from the file or from
 * swap), unlike MADV_DONTNEED, which would zero anonymous memory that Python may still use; on a
 * memory-mapped model file it returns the copied weights' pages to the page cache. A hint only:
 * failures and other systems are ignored. */
static void release_pages(const void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_PAGEOUT)
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page, b = ((uintptr_t)p + bytes) / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_PAGEOUT);
#else
    (void)p; (void)bytes;
#endif
}

/* Repack w [n, k] into memory of the model's own when its type has a repacked layout. */
static int repack_weight(slm_llama *md, slm_weight *w, int64_t n, int64_t k) {
    int rt = slm_repacked_type(w->type);
    if (!rt) return SLM_OK;
    size_t bytes = (size_t)((n + 7) / 8 * 8) * slm_row_size(w->type, k);
    void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!buf) return SLM_E_NOMEM;
    md->owned[md->n_owned++] = buf;
    slm_repack(w->type, w->data, buf, n, k);
    release_pages(w->data, (size_t)n * slm_row_size(w->type, k));
    w->type = rt;
    w->data = buf;
    return SLM_OK;
}

/* Every repackable matrix the forward pass multiplies by. Its units of weight rows start at
 * multiples of 8 (whole groups): head_dim for q/k/v, the *_UNIT sizes for the others. */
static int repack_weights(slm_llama *md) {
    const slm_llama_config *c = &md->cfg;
    md->owned = calloc((size_t)c->n_layers * 7 + 1, sizeof *md->owned);
    if (!md->owned) return SLM_E_NOMEM;
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int rc = repack_weight(md, &md->head, c->vocab, c->dim);
    for (int64_t l = 0; l < c->n_layers && !rc; l++) {
        slm_llama_layer *ly = &md->layers[l];
        struct { slm_weight *w; int64_t n, k; } mats[7] = {
            { &ly->q, qd, c->dim }, { &ly->k, kvd, c->dim }, { &ly->v, kvd, c->dim },
            { &ly->o, c->dim, qd }, { &ly->gate, c->ffn_dim, c->dim },
            { &ly->up, c->ffn_dim, c->dim }, { &ly->down, c->dim, c->ffn_dim } };
        /* q/k/v units are heads: whole groups only when head_dim is a multiple of 8 */
        for (int i = c->head_dim % 8 == 0 ? 0 : 3; i < 7 && !rc; i++)
            rc = repack_weight(md, mats[i].w, mats[i].n, mats[i].k);
    }
    return rc;
}

int slm_llama_new(const slm_llama_config *cfg, const slm_weight *embed, const float *norm,
                  const slm_weight *head, const slm_llama_layer *layers, slm_llama **out) {
    *out = NULL;
    if (cfg->dim <= 0 || cfg->ffn_dim <= 0 || cfg->n_layers <= 0 || cfg->n_heads <= 0 ||
        cfg->n_kv_heads <= 0 || cfg->head_dim <= 0 || cfg->vocab <= 0 ||
        cfg->n_heads % cfg->n_kv_heads != 0 || cfg->head_dim % 2 != 0)
        return SLM_E_SHAPE;
    if (cfg->kv_type != SLM_F32 && cfg->kv_type != SLM_Q8_0) return SLM_E_TYPE;
    if (cfg->prefill_act_bits != 0 && cfg->prefill_act_bits != 8 && cfg->prefill_act_bits != 16)
        return SLM_E_TYPE;
    if (!weight_ok(embed) || !weight_ok(head) || !norm) return SLM_E_TYPE;
    for (int64_t l = 0; l < cfg->n_layers; l++) {
        const slm_llama_layer *ly = &layers[l];
        const slm_weight *ws[7] = { &ly->q, &ly->k, &ly->v, &ly->o, &ly->gate, &ly->up, &ly->down };
        for (int i = 0; i < 7; i++)
            if (!weight_ok(ws[i])) return SLM_E_TYPE;
        if (!ly->attn_norm || !ly->ffn_norm) return SLM_E_TYPE;
    }
    slm_llama *md = calloc(1, sizeof *md);
    if (!md) return SLM_E_NOMEM;
    md->layers = malloc((size_t)cfg->n_layers * sizeof *md->layers);
    md->n_steps = (size_t)cfg->n_layers * STEPS_PER_LAYER + 2;
    md->steps = aligned_alloc(64, md->n_steps * sizeof *md->steps);
    if (!md->layers || !md->steps) { free(md->layers); free(md->steps); free(md); return SLM_E_NOMEM; }
    memcpy(md->layers, layers, (size_t)cfg->n_layers * sizeof *md->layers);
    md->cfg = *cfg;
    md->embed = *embed;
    md->head = *head;
    md->norm = norm;
    pthread_mutex_init(&md->mu, NULL);
    int rc = cfg->keep_layout || !slm_kernels_get()->repack ? SLM_OK : repack_weights(md);
    if (rc) { slm_llama_free(md); return rc; }
    *out = md;
    return SLM_OK;
}

static void free_scratch(slm_llama *md) {
    slm_act_buf_free(&md->in);
    for (int t = 0; t < md->cap_threads; t++) slm_act_buf_free(&md->own[t]);
    free(md->own);
    free(md->x);
    free(md->q);
    free(md->g);
    free(md->u);
    free(md->cos_sin);
    free(md->att);
    free(md->kv_rows);
    md->own = NULL;
    md->x = md->q = md->g = md->u = md->cos_sin = md->att = md->kv_rows = NULL;
    md->cap_m = md->cap_ctx = 0;
    md->cap_threads = 0;
}

void slm_llama_free(slm_llama *md) {
    if (!md) return;
    free_scratch(md);
    for (int i = 0; i < md->n_owned; i++) free(md->owned[i]);
    free(md->owned);
    pthread_mutex_destroy(&md->mu);
    free(md->steps);
    free(md->layers);
    free(md);
}

int slm_llama_repacked(const slm_llama *md) { return md->n_owned; }

int slm_llama_prefill_act_bits(const slm_llama *md) {
    if (md->cfg.prefill_act_bits != 8) return 16;
    for (int64_t l = 0; l < md->cfg.n_layers; l++) {
        const slm_llama_layer *ly = &md->layers[l];
        const slm_weight *lw[7] = { &ly->q, &ly->k, &ly->v, &ly->o, &ly->gate, &ly->up, &ly->down };
        for (int i = 0; i < 7; i++)
            if (slm_x8_base(lw[i]->type)) return 8;
    }
    return 16;
}

/* Make the scratch hold m rows, n_ctx positions and nth threads. */
static int reserve(slm_llama *md, int64_t m, int64_t n_ctx, int nth) {
    if (m <= md->cap_m && n_ctx <= md->cap_ctx && nth <= md->cap_threads) return SLM_OK;
    const slm_llama_config *c = &md->cfg;
    int64_t qd = c->n_heads * c->head_dim;
    m = m > md->cap_m ? m : md->cap_m;
    n_ctx = n_ctx > md->cap_ctx ? n_ctx : md->cap_ctx;
    nth = nth > md->cap_threads ? nth : md->cap_threads;
    free_scratch(md);
    int64_t k_max = max3(c->dim, qd, c->ffn_dim);
    int64_t group = c->n_heads / c->n_kv_heads;
    md->att_floats = slm_attend_scratch(ATT_ROWS, group, n_ctx, c->head_dim) + 16;
    md->own = calloc((size_t)nth, sizeof *md->own);
    md->x = malloc((size_t)(m * c->dim) * sizeof(float));
    md->q = malloc((size_t)(m * qd) * sizeof(float));
    md->g = malloc((size_t)(m * c->ffn_dim) * sizeof(float));
    md->u = malloc((size_t)(m * c->ffn_dim) * sizeof(float));
    md->cos_sin = malloc((size_t)(m * c->head_dim) * sizeof(float));
    md->att = malloc((size_t)nth * md->att_floats * sizeof(float));
    md->kv_rows = malloc((size_t)(nth * M_BLOCK * c->head_dim) * sizeof(float));
    int bad = !md->own || !md->x || !md->q || !md->g || !md->u || !md->cos_sin || !md->att ||
              !md->kv_rows ||
              slm_act_buf_reserve(&md->in, m, k_max);
    md->cap_threads = md->own ? nth : 0;
    for (int t = 0; t < md->cap_threads && !bad; t++)
        bad = slm_act_buf_reserve(&md->own[t], PRIVATE_ROWS, k_max);
    if (bad) { free_scratch(md); return SLM_E_NOMEM; }
    md->cap_m = m;
    md->cap_ctx = n_ctx;
    return SLM_OK;
}

/* ---- the team ------------------------------------------------------------------------------ */

typedef struct {
    slm_llama *md;
    const slm_kernels *kt;
    int64_t m, start_pos, max_seq;
    void *const *k_cache, *const *v_cache;    /* [n_layers] -> [n_kv_heads, max_seq, head_dim] */
    float *const *k_scale, *const *v_scale;   /* [n_layers] -> [n_kv_heads, max_seq] (int8) */
    float *logits;                            /* [rows_out, vocab] */
    int all_logits;
    step_sync *steps;                         /* [n_layers * STEPS_PER_LAYER + 2], zeroed */
} fwd_ctx;

/* One thread's walk through the steps. */
typedef struct {
    fwd_ctx *f;
    int ith, nth;
    int step;                 /* index of the current step in f->steps */
    int64_t mine;             /* units of the current step this thread finished */
} walker;

/* The next unit of the current step, or -1 when all n are taken. */
static int64_t claim(walker *w, int64_t n) {
    step_sync *s = &w->f->steps[w->step];
    if (atomic_load_explicit(&s->next, memory_order_relaxed) >= n) return -1;
    int64_t u = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    return u < n ? u : -1;
}

/* Wait until all n units of the current step are done (their results visible), then move on.
 * A thread publishes its finished units once per step, not once per unit: every update of the
 * shared counter moves its cache line between cores. */
static void step_end(walker *w, int64_t n) {
    step_sync *s = &w->f->steps[w->step];
    if (w->mine) atomic_fetch_add_explicit(&s->done, w->mine, memory_order_release);
    w->mine = 0;
    for (int i = 0; atomic_load_explicit(&s->done, memory_order_acquire) < n; i++) {
        if (i < SPINS) slm_cpu_relax();
        else sched_yield();
    }
    w->step++;
}

#define FOR_UNITS(w, n, u) for (int64_t u; (u = claim(w, n)) >= 0; (w)->mine++)

/* Weight rows per unit of a step over n rows: `unit`, or with one or two rows of x (decode)
 * enough for ~4 units a thread, as a decode unit is little work next to claiming it across
 * cores (the output head on 2 threads: 8 units of 6144 rows instead of 384 of 128; 2-thread
 * decode of SmolLM2 q4_0 ~220 -> ~260-300 tok/s, 8 units a thread in between). A multiple of
 * 8: whole groups of repacked rows. */
static int64_t rows_per_unit(const walker *w, int64_t m, int64_t n, int64_t unit) {
    if (m > PRIVATE_ROWS) return unit;
    int64_t r = (n + 4 * w->nth - 1) / (4 * w->nth);
    r = (r + 7) / 8 * 8;
    return r > unit ? r : unit;
}

/* What a step's input must hold for weights a, b, c (b, c may be NULL): NEED_Q, int16 blocks
 * for quantised weights; NEED_INTERLEAVED, also row-interleaved when many rows meet a quantised
 * weight in its stored layout (repacked ones read the plain blocks); NEED_Q8, for repacked
 * weights when int8 is allowed (int8 prefill asked for, and not the output head), int8 blocks
 * in place of int16 ones in prefill-sized steps (see act8). The head keeps int16 at every size:
 * its rows are the positions whose logits are asked for (the last one in generation, all of
 * them for logits() and eval), and the last position's logits must not depend on that. */
enum { NEED_Q = 1, NEED_INTERLEAVED = 2, NEED_Q8 = 4 };
static int input_needs(int int8_ok, const slm_weight *a, const slm_weight *b, const slm_weight *c) {
    const slm_weight *ws[3] = { a, b, c };
    int need = 0;
    for (int i = 0; i < 3; i++) {
        if (!ws[i] || !slm_is_quantized(ws[i]->type)) continue;
        if (slm_x8_base(ws[i]->type) && int8_ok) need |= NEED_Q8;
        else need |= NEED_Q | (slm_x8_base(ws[i]->type) ? 0 : NEED_INTERLEAVED);
    }
    return need;
}

static int interleaved(int need, int64_t rows) {
    return (need & NEED_INTERLEAVED) && rows >= SLM_INTERLEAVE_ROWS;
}

/* int8 activation blocks as well: prefill-sized steps that need them. */
static int act8(int need, int64_t rows) {
    return (need & NEED_Q8) && rows >= SLM_INTERLEAVE_ROWS;
}

/* Rows r0 .. r1-1 of a step input (see step_input) into buf. */
static void input_rows(const fwd_ctx *f, const float *src, slm_act_buf *buf, int64_t rows,
                       int64_t k, const float *norm_w, int need, int64_t r0, int64_t r1) {
    const float *fl = norm_w ? buf->f : src;
    if (norm_w) slm_rmsnorm(src + r0 * k, norm_w, buf->f + r0 * k, r1 - r0, k, f->md->cfg.norm_eps);
    int a8 = act8(need, rows);
    if ((need & NEED_Q) || ((need & NEED_Q8) && !a8))     /* int8 blocks in prefill steps only */
        slm_act_quantize_rows(f->kt, fl, buf, k, r0, r1);
    if (interleaved(need, rows)) slm_act_interleave(buf, k, rows, r0 / 8, (r1 + 7) / 8);
    if (a8) slm_act_quantize8_rows(f->kt, fl, buf, k, r0, r1);
}

/* The input of a linear step: rows src[rows, k], normalised by norm_w when given, as float rows
 * and (as `need` says, input_needs) as int16 blocks. See the banner for who makes it. */
static slm_act step_input(walker *w, const float *src, int64_t rows, int64_t k,
                          const float *norm_w, int need) {
    fwd_ctx *f = w->f;
    slm_llama *md = f->md;
    int own = rows <= PRIVATE_ROWS;
    slm_act_buf *buf = own ? &md->own[w->ith] : &md->in;
    if (own) {
        input_rows(f, src, buf, rows, k, norm_w, need, 0, rows);
    } else if (norm_w || need) {
        int64_t units = (rows + INPUT_ROWS - 1) / INPUT_ROWS;
        FOR_UNITS(w, units, u) {
            int64_t r0 = u * INPUT_ROWS, r1 = r0 + INPUT_ROWS < rows ? r0 + INPUT_ROWS : rows;
            input_rows(f, src, buf, rows, k, norm_w, need, r0, r1);
        }
        step_end(w, units);
    }
    slm_act a = slm_act_view(buf, k, interleaved(need, rows), act8(need, rows));
    a.f = norm_w ? buf->f : src;
    return a;
}

/* y[i*ys + j] (+)= x row i0+i . w row j0+j for i < mi, j < nj; then + bias[j0 + j]. */
static void linear(const fwd_ctx *f, const slm_weight *w, int64_t k, const slm_act *x, int64_t i0,
                   int64_t mi, int64_t j0, int64_t nj, float *y, int64_t ys, int acc) {
    size_t ws = slm_row_size(w->type, k);
    slm_gemm_for(f->kt, w->type)((const uint8_t *)w->data + j0 * ws, ws, x, i0, y, (size_t)ys,
                                 mi, nj, acc);
    if (w->bias)
        for (int64_t i = 0; i < mi; i++)
            for (int64_t j = 0; j < nj; j++) y[i * ys + j] += w->bias[j0 + j];
}

static void rope_rows(const fwd_ctx *f, float *y, int64_t ys, int64_t i0, int64_t mi) {
    const slm_llama_config *c = &f->md->cfg;
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < mi; i++) {
        const float *cs = f->md->cos_sin + (i0 + i) * c->head_dim;   /* cos[half], sin[half] */
        slm_rope_apply(y + i * ys, 1, c->head_dim, 0, half, cs, cs + half, c->rope_interleaved);
    }
}

static void qkv_step(walker *w, int l, const slm_act *x) {
    const fwd_ctx *f = w->f;
    const slm_llama_config *c = &f->md->cfg;
    const slm_llama_layer *ly = &f->md->layers[l];
    int64_t hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, heads = nh + 2 * nkv;
    int64_t m = f->m, mblocks = (m + M_BLOCK - 1) / M_BLOCK;
    FOR_UNITS(w, mblocks * heads, u) {
        int64_t i0 = (u / heads) * M_BLOCK, mi = m - i0 < M_BLOCK ? m - i0 : M_BLOCK;
        int64_t h = u % heads;
        if (h < nh) {                                     /* query head h -> q[m, nh*hd] */
            float *y = f->md->q + i0 * nh * hd + h * hd;
            linear(f, &ly->q, c->dim, x, i0, mi, h * hd, hd, y, nh * hd, 0);
            rope_rows(f, y, nh * hd, i0, mi);
        } else {                                          /* KV head g -> its cache rows */
            int is_v = h >= nh + nkv;
            int64_t g = h - nh - (is_v ? nkv : 0);
            int64_t row = g * f->max_seq + f->start_pos + i0;   /* first cache row written */
            void *cache = (is_v ? f->v_cache : f->k_cache)[l];
            float *y = c->kv_type == SLM_F32 ? (float *)cache + row * hd      /* [mi, hd] */
                                             : f->md->kv_rows + (size_t)w->ith * M_BLOCK * hd;
            linear(f, is_v ? &ly->v : &ly->k, c->dim, x, i0, mi, g * hd, hd, y, hd, 0);
            if (!is_v) rope_rows(f, y, hd, i0, mi);
            if (c->kv_type != SLM_F32) {
                float *scale = (is_v ? f->v_scale : f->k_scale)[l];
                for (int64_t i = 0; i < mi; i++)
                    slm_kv_quantize_row(y + i * hd, (int8_t *)cache + (row + i) * hd, scale + row + i, hd);
            }
        }
    }
    step_end(w, mblocks * heads);
}

static void attention_step(walker *w, int l) {
    const fwd_ctx *f = w->f;
    const slm_llama_config *c = &f->md->cfg;
    int64_t nkv = c->n_kv_heads, group = c->n_heads / nkv, m = f->m;
    slm_attn_args a = {
        .q = f->md->q, .q_stride = c->n_heads * c->head_dim, .kv_type = c->kv_type,
        .k_cache = f->k_cache[l], .v_cache = f->v_cache[l],
        .k_scale = f->k_scale ? f->k_scale[l] : NULL, .v_scale = f->v_scale ? f->v_scale[l] : NULL,
        .out = f->md->q, .out_stride = c->n_heads * c->head_dim,
        .start_pos = f->start_pos, .max_seq = f->max_seq, .n_heads = c->n_heads,
        .n_kv_heads = nkv, .head_dim = c->head_dim,
        .scale = (float)(1.0 / sqrt((double)c->head_dim)),
    };
    /* units: (block of ATT_ROWS query rows, KV head); with few of them (decode) each group's
     * query heads are cut into slices too, aiming at ~2 units a thread */
    int64_t blocks = (m + ATT_ROWS - 1) / ATT_ROWS, pairs = blocks * nkv;
    int64_t split = (2 * w->nth + pairs - 1) / pairs;
    split = split < 1 ? 1 : split > group ? group : split;
    float *scratch = f->md->att + (size_t)w->ith * f->md->att_floats;
    FOR_UNITS(w, pairs * split, u) {
        int64_t blk = blocks - 1 - u / (nkv * split);     /* longest rows first: better balance */
        int64_t i0 = blk * ATT_ROWS, r = m - i0 < ATT_ROWS ? m - i0 : ATT_ROWS;
        int64_t g = (u / split) % nkv, sl = u % split;
        int64_t h0 = g * group + sl * group / split;
        int64_t hc = g * group + (sl + 1) * group / split - h0;
        f->kt->attend(&a, i0, r, g, h0, hc, scratch);
    }
    step_end(w, pairs * split);
}

/* y[m, n] += x @ W^T over units of `unit` weight rows (the o and down projections). */
static void residual_step(walker *w, const slm_weight *wt, int64_t k, const slm_act *x,
                          float *y, int64_t n, int64_t unit) {
    const fwd_ctx *f = w->f;
    int64_t m = f->m, mblocks = (m + M_BLOCK - 1) / M_BLOCK;
    unit = rows_per_unit(w, m, n, unit);
    int64_t nu = (n + unit - 1) / unit;
    FOR_UNITS(w, mblocks * nu, u) {
        int64_t i0 = (u / nu) * M_BLOCK, mi = m - i0 < M_BLOCK ? m - i0 : M_BLOCK;
        int64_t j0 = (u % nu) * unit, nj = n - j0 < unit ? n - j0 : unit;
        linear(f, wt, k, x, i0, mi, j0, nj, y + i0 * n + j0, n, 1);
    }
    step_end(w, mblocks * nu);
}

static void gate_up_step(walker *w, int l, const slm_act *x) {
    const fwd_ctx *f = w->f;
    const slm_llama_config *c = &f->md->cfg;
    const slm_llama_layer *ly = &f->md->layers[l];
    int64_t m = f->m, n = c->ffn_dim, mblocks = (m + M_BLOCK - 1) / M_BLOCK;
    int64_t unit = rows_per_unit(w, m, n, FFN_UNIT), nu = (n + unit - 1) / unit;
    FOR_UNITS(w, mblocks * nu, u) {
        int64_t i0 = (u / nu) * M_BLOCK, mi = m - i0 < M_BLOCK ? m - i0 : M_BLOCK;
        int64_t j0 = (u % nu) * unit, nj = n - j0 < unit ? n - j0 : unit;
        float *g = f->md->g + i0 * n + j0, *up = f->md->u + i0 * n + j0;
        linear(f, &ly->gate, c->dim, x, i0, mi, j0, nj, g, n, 0);
        linear(f, &ly->up, c->dim, x, i0, mi, j0, nj, up, n, 0);
        for (int64_t i = 0; i < mi; i++) f->kt->silu_mul(g + i * n, up + i * n, g + i * n, nj);
    }
    step_end(w, mblocks * nu);
}

static void head_step(walker *w, const slm_act *x, int64_t rows) {
    const fwd_ctx *f = w->f;
    const slm_llama_config *c = &f->md->cfg;
    int64_t n = c->vocab, mblocks = (rows + M_BLOCK - 1) / M_BLOCK;
    int64_t unit = rows_per_unit(w, rows, n, HEAD_UNIT), nu = (n + unit - 1) / unit;
    FOR_UNITS(w, mblocks * nu, u) {
        int64_t i0 = (u / nu) * M_BLOCK, mi = rows - i0 < M_BLOCK ? rows - i0 : M_BLOCK;
        int64_t j0 = (u % nu) * unit, nj = n - j0 < unit ? n - j0 : unit;
        linear(f, &f->md->head, c->dim, x, i0, mi, j0, nj, f->logits + i0 * n + j0, n, 0);
    }
    step_end(w, mblocks * nu);
}

static void forward_team(void *p, int ith, int nth) {
    walker w = { .f = p, .ith = ith, .nth = nth };
    slm_llama *md = w.f->md;
    const slm_llama_config *c = &md->cfg;
    int64_t m = w.f->m, qd = c->n_heads * c->head_dim;
    const int p8 = c->prefill_act_bits == 8;             /* int8 blocks allowed in the layers */
    for (int l = 0; l < c->n_layers; l++) {
        const slm_llama_layer *ly = &md->layers[l];
        slm_act in = step_input(&w, md->x, m, c->dim, ly->attn_norm,
                                input_needs(p8, &ly->q, &ly->k, &ly->v));
        qkv_step(&w, l, &in);
        attention_step(&w, l);
        in = step_input(&w, md->q, m, qd, NULL, input_needs(p8, &ly->o, NULL, NULL));
        residual_step(&w, &ly->o, qd, &in, md->x, c->dim, O_UNIT);
        in = step_input(&w, md->x, m, c->dim, ly->ffn_norm, input_needs(p8, &ly->gate, &ly->up, NULL));
        gate_up_step(&w, l, &in);
        in = step_input(&w, md->g, m, c->ffn_dim, NULL, input_needs(p8, &ly->down, NULL, NULL));
        residual_step(&w, &ly->down, c->ffn_dim, &in, md->x, c->dim, O_UNIT);
    }
    int64_t rows = w.f->all_logits ? m : 1;
    slm_act in = step_input(&w, md->x + (m - rows) * c->dim, rows, c->dim, md->norm,
                            input_needs(0, &md->head, NULL, NULL));
    head_step(&w, &in, rows);
}

int slm_llama_forward(slm_llama *md, slm_pool *pool, const int32_t *tokens, int64_t m,
                      int64_t start_pos, void *const *k_cache, void *const *v_cache,
                      float *const *k_scale, float *const *v_scale, int64_t max_seq,
                      float *logits, int all_logits) {
    const slm_llama_config *c = &md->cfg;
    if (m <= 0 || start_pos < 0 || start_pos + m > max_seq) return SLM_E_SHAPE;
    if (c->kv_type != SLM_F32 && (!k_scale || !v_scale)) return SLM_E_SHAPE;
    for (int64_t i = 0; i < m; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab) return SLM_E_SHAPE;
    int nth = slm_pool_team_size(pool);
    pthread_mutex_lock(&md->mu);
    int rc = reserve(md, m, start_pos + m, nth);
    if (rc) { pthread_mutex_unlock(&md->mu); return rc; }

    /* embeddings and the RoPE angles of every row's position: small, serial */
    size_t es = slm_row_size(md->embed.type, c->dim);
    for (int64_t i = 0; i < m; i++)
        slm_dequantize(md->embed.type, (const uint8_t *)md->embed.data + (size_t)tokens[i] * es,
                       md->x + i * c->dim, 1, c->dim);
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < m; i++) {
        float *cs = md->cos_sin + i * c->head_dim;
        slm_rope_angles((int32_t)(start_pos + i), 0, half, c->head_dim, c->rope_base, cs, cs + half);
    }

    fwd_ctx f = { .md = md, .kt = slm_kernels_get(), .m = m, .start_pos = start_pos,
                  .max_seq = max_seq, .k_cache = k_cache, .v_cache = v_cache,
                  .k_scale = c->kv_type == SLM_F32 ? NULL : k_scale,
                  .v_scale = c->kv_type == SLM_F32 ? NULL : v_scale, .logits = logits,
                  .all_logits = all_logits, .steps = md->steps };
    memset(md->steps, 0, md->n_steps * sizeof *md->steps);
    slm_pool_team(pool, forward_team, &f);
    pthread_mutex_unlock(&md->mu);
    return SLM_OK;
}
