/* internal.h - declarations shared between slmkit's C files, not part of the public API. */
#ifndef SLMKIT_INTERNAL_H
#define SLMKIT_INTERNAL_H

#include "slmkit.h"

/* Run fn(ctx, start, end) over [0, n) split into contiguous, even chunks (a few per thread, taken
 * from a shared counter by the workers and the caller; a chunk is not tied to a thread, so keep
 * scratch per call of fn). Returns when every chunk is done. pool may be NULL (serial). */
typedef void (*slm_range_fn)(void *ctx, int64_t start, int64_t end);
void slm_parallel_for(slm_pool *pool, int64_t n, slm_range_fn fn, void *ctx);

#endif
