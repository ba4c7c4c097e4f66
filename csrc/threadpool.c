/* threadpool.c - a fixed pool of pthread workers for slm_parallel_for.
 *
 * Workers are created once and sleep on a condition variable between jobs. A job is published
 * by bumping a generation counter; each worker runs its own contiguous chunk, the caller runs
 * chunk 0. Workers and caller spin briefly before sleeping, because decode calls parallel_for
 * hundreds of times per token and a futex wake costs more than a short spin; they never spin
 * while idle for long.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "internal.h"

#define SPIN_ITERS 20000   /* ~tens of microseconds of polling before sleeping */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

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
    atomic_uint_fast64_t generation;   /* bumped once per job */
    atomic_int pending;                /* workers still running the current job */
    atomic_int stop;
};

typedef struct { slm_pool *pool; int index; } worker_arg;

/* Set while a thread runs pool work: a nested parallel_for then runs serially (no deadlock). */
static _Thread_local int tl_in_pool;

static void run_chunk(slm_pool *p, int index) {
    int64_t start = p->n * index / p->n_threads, end = p->n * (index + 1) / p->n_threads;
    if (start < end) p->fn(p->ctx, start, end);
}

static void *worker_main(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    slm_pool *p = a.pool;
    tl_in_pool = 1;
    uint64_t seen = 0;
    for (;;) {
        /* wait for a new generation: spin first, then sleep */
        uint64_t gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int i = 0; gen == seen && i < SPIN_ITERS && !atomic_load(&p->stop); i++) {
            cpu_relax();
            gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = gen;
        run_chunk(p, a.index);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);            /* last one out wakes the caller */
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

slm_pool *slm_pool_new(int n_threads) {
    slm_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->call_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (p->n_threads > 1) {
        p->threads = calloc((size_t)p->n_threads - 1, sizeof(pthread_t));
        if (!p->threads) { free(p); return NULL; }
        for (int i = 1; i < p->n_threads; i++) {
            worker_arg *a = malloc(sizeof *a);
            if (a) { a->pool = p; a->index = i; }
            if (!a || pthread_create(&p->threads[i - 1], NULL, worker_main, a) != 0) {
                free(a);
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

void slm_parallel_for(slm_pool *pool, int64_t n, slm_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!pool || pool->n_threads == 1 || n == 1 || tl_in_pool) { fn(ctx, 0, n); return; }
    slm_pool *p = pool;
    pthread_mutex_lock(&p->call_mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);                  /* so no worker misses the wake-up */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    tl_in_pool = 1;
    run_chunk(p, 0);
    tl_in_pool = 0;

    for (int i = 0; i < SPIN_ITERS && atomic_load_explicit(&p->pending, memory_order_acquire); i++)
        cpu_relax();
    if (atomic_load_explicit(&p->pending, memory_order_acquire)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending)) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->call_mu);
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
