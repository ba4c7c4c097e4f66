/* ops.c - RMSNorm, SiLU-gated product, residual add and softmax on float32 activations.
 *
 * Plain C that gcc -O3 vectorises without -ffast-math: reductions keep several independent
 * partial sums in small arrays (so no reassociation of a single accumulator is needed) and the
 * elementwise loops have no cross-iteration dependencies. These ops are memory bound next to
 * the matmuls, so they stay single-threaded.
 */
#include <math.h>
#include "kernels.h"

/* Number of independent partial sums in a reduction: 8 doubles = four SSE2 / two AVX vectors,
 * enough to hide the add latency. */
#define RED_LANES 8

/* sum(x[i]^2) for x[n], accumulated in double so long rows keep full float precision. */
static double sum_squares(const float *x, int64_t n) {
    double acc[RED_LANES] = {0};   /* acc[RED_LANES]: per-lane partial sums */
    int64_t i = 0;
    for (; i + RED_LANES <= n; i += RED_LANES)
        for (int l = 0; l < RED_LANES; l++) {
            double v = x[i + l];
            acc[l] += v * v;
        }
    double s = 0.0;
    for (int l = 0; l < RED_LANES; l++) s += acc[l];
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void slm_rmsnorm(const float *x, const float *weight, float *out, int64_t m, int64_t d, float eps) {
    if (d <= 0) return;
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * d;   /* xr[d] */
        float *yr = out + r * d;       /* yr[d], may be xr: each element is read before written */
        double ms = sum_squares(xr, d) / (double)d;
        float scale = (float)(1.0 / sqrt(ms + (double)eps));
        for (int64_t j = 0; j < d; j++) yr[j] = xr[j] * scale * weight[j];
    }
}

void slm_silu_mul(const float *gate, const float *up, float *out, int64_t n) {
    slm_kernels_get()->silu_mul(gate, up, out, n);
}

/* The reference of slm_kernels.silu_mul. */
void slm_silu_mul_generic(const float *gate, const float *up, float *out, int64_t n) {
    /* silu(g) = g * sigmoid(g) = g / (1 + e^-g). For g << 0, e^-g overflows to inf and the
     * quotient is a correctly signed 0, so no clamp is needed. Elementwise, so out may alias. */
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void slm_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* Softmax of one row x[n] in place: subtract the max so expf never overflows, sum in double. */
static void softmax_row(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i] - mx);
        x[i] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);   /* sum >= 1: the max element contributes e^0 */
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void slm_softmax(float *x, int64_t m, int64_t n) {
    if (n <= 0) return;
    for (int64_t r = 0; r < m; r++) softmax_row(x + r * n, n);
}
