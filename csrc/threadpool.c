/* threadpool.c - STUB (serial). To be replaced by a real pthread pool. */
#include <stdlib.h>
#include <unistd.h>
#include "internal.h"

struct slm_pool { int n_threads; };

slm_pool *slm_pool_new(int n_threads) {
    slm_pool *p = malloc(sizeof *p);
    if (p) p->n_threads = n_threads < 1 ? 1 : n_threads;
    return p;
}
void slm_pool_free(slm_pool *pool) { free(pool); }
int slm_pool_size(const slm_pool *pool) { return pool ? pool->n_threads : 1; }
int slm_physical_cores(void) { long n = sysconf(_SC_NPROCESSORS_ONLN); return n > 0 ? (int)n : 1; }
void slm_parallel_for(slm_pool *pool, int64_t n, slm_range_fn fn, void *ctx) { if (n > 0) fn(ctx, 0, n); }
