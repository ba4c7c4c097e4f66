/* threadpool.c - a fixed pool of pthread workers for slm_parallel_for.
 *
 * Workers are created once and sleep on a condition variable between jobs. A job is [0, n) cut
 * into CHUNKS_PER_THREAD contiguous, even chunks per thread; the caller and the workers claim
 * chunks from one atomic word (generation | chunk count | next chunk) until none is left, and the caller
 * returns once every chunk is done. Claiming instead of fixed assignment matters on a laptop:
 * a worker that the OS has not scheduled yet simply gets no chunk, rather than stalling the
 * whole call. Workers and caller spin briefly before sleeping (decode calls parallel_for
 * hundreds of times per token and a futex wake costs more than a short spin); an idle pool
 * sleeps.
 *
 * Team jobs (slm_pool_team) run one function on every thread at once, each with its own index,
 * for passes whose threads wait for each other between steps (a whole forward pass): each
 * thread then claims at most one chunk, so no thread ever runs two team members.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "internal.h"

#define SPIN_ITERS 20000       /* ~hundreds of microseconds of polling before sleeping */
#define CHUNKS_PER_THREAD 4    /* small enough to rebalance, big enough to keep tiles whole */

#define cpu_relax() slm_cpu_relax()

struct slm_pool {
    int n_threads;                 /* including the caller */
    pthread_t *threads;            /* [n_threads - 1] workers */
    pthread_mutex_t call_mu;       /* one parallel_for at a time per pool */
    pthread_mutex_t mu;            /* guards sleeping on the condvars */
    pthread_cond_t work_cv, done_cv;
    /* the current job */
    slm_range_fn fn;
    void *ctx;
    int64_t n;
    int64_t n_chunks;                  /* caller's copy of the chunk count */
    int one_each;                      /* team job: a thread runs at most one chunk */
    /* generation << 32 | chunk count << 16 | next chunk: everything a worker must check before
     * it may touch fn/ctx/n, in one word, so a late worker never reads a half-written job */
    atomic_uint_fast64_t claim;
    atomic_int_fast64_t done;          /* chunks finished in the current job */
    atomic_int stop;
};

/* Set while a thread runs pool work: a nested parallel_for then runs serially (no deadlock). */
static _Thread_local int tl_in_pool;

/* Claim and run chunks of generation gen until none is left (or a newer job replaced it). */
static void run_chunks(slm_pool *p, uint64_t gen) {
    uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if ((v >> 32) != gen || (v & 0xffff) >= ((v >> 16) & 0xffff)) return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;                            /* v was reloaded; try again */
        int64_t c = (int64_t)(v & 0xffff), nc = (int64_t)((v >> 16) & 0xffff);
        int64_t start = p->n * c / nc, end = p->n * (c + 1) / nc;
        if (start < end) p->fn(p->ctx, start, end);
        int one_each = p->one_each;              /* read before the job can be replaced */
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == nc) {
            pthread_mutex_lock(&p->mu);          /* last chunk: wake the caller if it sleeps */
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
        if (one_each) return;
        v = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    slm_pool *p = arg;
    tl_in_pool = 1;
    uint64_t seen = 0;                           /* last generation this worker looked at */
    for (;;) {
        /* wait for a new generation: spin first, then sleep */
        uint64_t gen = atomic_load_explicit(&p->claim, memory_order_acquire) >> 32;
        for (int i = 0; gen == seen && i < SPIN_ITERS && !atomic_load(&p->stop); i++) {
            cpu_relax();
            gen = atomic_load_explicit(&p->claim, memory_order_acquire) >> 32;
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load(&p->claim) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = gen;
        run_chunks(p, gen);
    }
    return NULL;
}

slm_pool *slm_pool_new(int n_threads) {
    slm_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads < 1 ? 1 : n_threads > 4096 ? 4096 : n_threads;   /* chunk ids: 16 bits */
    pthread_mutex_init(&p->call_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    if (p->n_threads > 1) {
        p->threads = calloc((size_t)p->n_threads - 1, sizeof(pthread_t));
        if (!p->threads) { free(p); return NULL; }
        for (int i = 1; i < p->n_threads; i++) {
            if (pthread_create(&p->threads[i - 1], NULL, worker_main, p) != 0) {
                p->n_threads = i;           /* keep the workers that did start */
                break;
            }
        }
    }
    return p;
}

void slm_pool_free(slm_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    free(pool->threads);
    pthread_cond_destroy(&pool->work_cv);
    pthread_cond_destroy(&pool->done_cv);
    pthread_mutex_destroy(&pool->mu);
    pthread_mutex_destroy(&pool->call_mu);
    free(pool);
}

int slm_pool_size(const slm_pool *pool) { return pool ? pool->n_threads : 1; }

/* Publish a job of n_chunks chunks over [0, n), take part in it, and wait for its end. */
static void run_job(slm_pool *p, int64_t n, int64_t n_chunks, int one_each, slm_range_fn fn,
                    void *ctx) {
    pthread_mutex_lock(&p->call_mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->n_chunks = n_chunks;
    p->one_each = one_each;
    atomic_store(&p->done, 0);
    uint64_t gen = (atomic_load(&p->claim) >> 32) + 1;
    pthread_mutex_lock(&p->mu);                  /* so no sleeping worker misses the wake-up */
    atomic_store_explicit(&p->claim, gen << 32 | (uint64_t)p->n_chunks << 16,
                          memory_order_release);   /* publish the job */
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    tl_in_pool = 1;
    run_chunks(p, gen);
    tl_in_pool = 0;

    /* chunks claimed by workers may still be running */
    for (int i = 0; i < SPIN_ITERS && atomic_load_explicit(&p->done, memory_order_acquire) < p->n_chunks; i++)
        cpu_relax();
    if (atomic_load_explicit(&p->done, memory_order_acquire) < p->n_chunks) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->done) < p->n_chunks) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->call_mu);
}

void slm_parallel_for(slm_pool *pool, int64_t n, slm_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!pool || pool->n_threads == 1 || n == 1 || tl_in_pool) { fn(ctx, 0, n); return; }
    int64_t most = (int64_t)pool->n_threads * CHUNKS_PER_THREAD;
    run_job(pool, n, n < most ? n : most, 0, fn, ctx);
}

typedef struct { slm_team_fn fn; void *ctx; int nth; } team_job;

static void team_member(void *p, int64_t ith, int64_t end) {
    team_job *t = p;
    (void)end;
    t->fn(t->ctx, (int)ith, t->nth);
}

int slm_pool_team(slm_pool *pool, slm_team_fn fn, void *ctx) {
    if (!pool || pool->n_threads == 1 || tl_in_pool) { fn(ctx, 0, 1); return 1; }
    team_job t = { fn, ctx, pool->n_threads };
    run_job(pool, pool->n_threads, pool->n_threads, 1, team_member, &t);
    return t.nth;
}

int slm_pool_team_size(const slm_pool *pool) {
    return !pool || tl_in_pool ? 1 : pool->n_threads;
}

/* Unique (physical_package_id, core_id) pairs under /sys; logical CPUs if that is unreadable. */
int slm_physical_cores(void) {
    long n_cpu = sysconf(_SC_NPROCESSORS_CONF);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_cpu < 1) n_cpu = 1;
    if (online < 1) online = 1;
    long *keys = malloc((size_t)n_cpu * sizeof(long));   /* [n_cpu] package << 20 | core */
    if (!keys) return (int)online;
    int n_keys = 0;
    for (long c = 0; c < n_cpu; c++) {
        char path[128];
        long core = -1, pkg = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", c);
        FILE *f = fopen(path, "r");
        if (!f) continue;                       /* offline or absent */
        if (fscanf(f, "%ld", &core) != 1) core = -1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
        f = fopen(path, "r");
        if (f) { if (fscanf(f, "%ld", &pkg) != 1) pkg = -1; fclose(f); }
        if (core < 0) continue;
        long key = (pkg < 0 ? 0 : pkg) << 20 | core;
        int dup = 0;
        for (int i = 0; i < n_keys; i++) dup |= keys[i] == key;
        if (!dup) keys[n_keys++] = key;
    }
    free(keys);
    return n_keys > 0 ? n_keys : (int)online;
}
