/* probe.c - times the machine-limit probes of the active kernel variant (slmkit.h).
 *
 * The benchmarks report kernel speed as fractions of these two numbers, measured in the same
 * run on the same machine: streaming-read bandwidth (the bound of decode, which reads every
 * weight once per token) and the int8 dot-product peak (the bound of prefill).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"

#define READ_PARTS_PER_THREAD 8   /* parts claimed dynamically: a descheduled thread costs less */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const slm_kernels *kt;
    const uint8_t *buf;           /* [bytes] */
    size_t part;                  /* bytes per part, a multiple of 128 */
    int64_t iters;
    _Atomic uint64_t sink;        /* keeps the results alive */
} probe_ctx;

static void read_task(void *p, int64_t i0, int64_t i1) {
    probe_ctx *c = p;
    uint64_t s = 0;
    for (int64_t i = i0; i < i1; i++) s ^= c->kt->probe_read(c->buf + (size_t)i * c->part, c->part);
    c->sink ^= s;
}

static void int8_member(void *p, int ith, int nth) {
    probe_ctx *c = p;
    (void)ith, (void)nth;
    c->sink += (uint64_t)c->kt->probe_int8(c->iters);
}

double slm_probe_read_gbps(slm_pool *pool, int64_t bytes, int reps) {
    int64_t parts = (int64_t)slm_pool_size(pool) * READ_PARTS_PER_THREAD;
    size_t part = (size_t)(bytes / parts) / 128 * 128;
    if (bytes <= 0 || part == 0 || reps < 1) return SLM_E_SHAPE;
    uint8_t *buf = aligned_alloc(64, part * (size_t)parts);
    if (!buf) return SLM_E_NOMEM;
    memset(buf, 1, part * (size_t)parts);                 /* fault every page in first */
    probe_ctx c = { .kt = slm_kernels_get(), .buf = buf, .part = part };
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        slm_parallel_for(pool, parts, read_task, &c);
        double gbps = (double)part * (double)parts / (now_s() - t0) / 1e9;
        if (gbps > best) best = gbps;
    }
    free(buf);
    return best;
}

double slm_probe_int8_gops(slm_pool *pool, int64_t iters, int reps) {
    if (iters <= 0 || reps < 1) return SLM_E_SHAPE;
    probe_ctx c = { .kt = slm_kernels_get(), .iters = iters };
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        int nt = slm_pool_team(pool, int8_member, &c);     /* every thread runs the loop once */
        double gops = (double)nt * (double)iters * PROBE_INT8_DOTS * 64.0 / (now_s() - t0) / 1e9;
        if (gops > best) best = gops;
    }
    return best;
}
