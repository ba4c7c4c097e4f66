/* avx2_util.h - small AVX2 helpers shared by the AVX2 kernel files (only included by files
 * compiled with -mavx2 -mfma -mf16c). */
#ifndef SLMKIT_AVX2_UTIL_H
#define SLMKIT_AVX2_UTIL_H

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

/* Sum, max of the 8 lanes; sum of 8 int32 lanes. */
AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Lane j = max (int32), sum of the 8 lanes of v[j]: 8 horizontal reductions at the cost of ~2. */
AI __m256i hmax8x8i(const __m256i v[8]) {
#define SHUF(a, b, m) _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m))
#define PAIRS(a, b) _mm256_max_epi32(SHUF(a, b, _MM_SHUFFLE(2, 0, 2, 0)), SHUF(a, b, _MM_SHUFFLE(3, 1, 3, 1)))
    __m256i q0 = PAIRS(PAIRS(v[0], v[1]), PAIRS(v[2], v[3]));  /* [v0..v3 of lanes 0-3 | 4-7] */
    __m256i q1 = PAIRS(PAIRS(v[4], v[5]), PAIRS(v[6], v[7]));
#undef PAIRS
#undef SHUF
    return _mm256_max_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

AI __m256i hsum8x8i(const __m256i v[8]) {
    __m256i q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

#endif
