/* dispatch.c - picks the matmul kernel variant for this CPU at run time.
 *
 * The best supported variant is chosen on first use; SLMKIT_KERNEL=generic|avx2|avx512vnni in the
 * environment overrides it (at first use), and slm_set_kernel switches it later (tests).
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

static _Atomic(const slm_kernels *) g_active;   /* NULL until first use */

static int cpu_has_avx2(void) {
#if defined(SLMKIT_HAVE_AVX2_SOURCES) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c") && slm_kernels_avx2.gemm_f32 != NULL;
#else
    return 0;
#endif
}

static int cpu_has_avx512vnni(void) {
#if defined(SLMKIT_HAVE_AVX2_SOURCES) && (defined(__GNUC__) || defined(__clang__))
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* The variant called `name` (any case, surrounding white space ignored), or NULL if unknown or
 * not runnable on this CPU. */
static const slm_kernels *find_variant(const char *name) {
    if (!name) return NULL;
    char key[32];
    while (isspace((unsigned char)*name)) name++;
    size_t n = 0;
    for (; name[n] && !isspace((unsigned char)name[n]) && n + 1 < sizeof key; n++)
        key[n] = (char)tolower((unsigned char)name[n]);
    key[n] = 0;
    for (const char *rest = name + n; *rest; rest++)
        if (!isspace((unsigned char)*rest)) return NULL;   /* more than one word, or too long */
    if (strcmp(key, "generic") == 0) return &slm_kernels_generic;
#ifdef SLMKIT_HAVE_AVX2_SOURCES
    if (strcmp(key, "avx2") == 0 && cpu_has_avx2()) return &slm_kernels_avx2;
    if (strcmp(key, "avx512vnni") == 0 && cpu_has_avx512vnni()) return &slm_kernels_avx512vnni;
#endif
    return NULL;
}

static const slm_kernels *best_variant(void) {
#ifdef SLMKIT_HAVE_AVX2_SOURCES
    if (cpu_has_avx512vnni()) return &slm_kernels_avx512vnni;
    if (cpu_has_avx2()) return &slm_kernels_avx2;
#endif
    return &slm_kernels_generic;
}

const slm_kernels *slm_kernels_get(void) {
    const slm_kernels *kt = atomic_load_explicit(&g_active, memory_order_acquire);
    if (kt) return kt;
    /* Racing first calls compute the same answer, so a plain store is enough. */
    kt = find_variant(getenv("SLMKIT_KERNEL"));
    if (!kt) kt = best_variant();
    const slm_kernels *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_active, &expected, kt)) kt = expected;
    return kt;
}

const char *slm_kernel_name(void) { return slm_kernels_get()->name; }

int slm_set_kernel(const char *name) {
    const slm_kernels *kt = find_variant(name);
    if (!kt) return SLM_E_TYPE;
    atomic_store_explicit(&g_active, kt, memory_order_release);
    return SLM_OK;
}
