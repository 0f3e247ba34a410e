/* SPDX-License-Identifier: MIT */
/*
 * The hot loops of frame synthesis (loops.h) in two builds, SSE2 and
 * AVX2, and the choice between them.  The AVX2 build is used when the
 * CPU has AVX2 and the configuration allows it (simd = 1); both produce
 * the same bits, which the golden-frame test checks for each.
 */
#include "drivers/sim/sim_internal.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static const sim_v8 sim__one8 = { 1, 1, 1, 1, 1, 1, 1, 1 };

/* Stores sixteen values 0..255 held in two vectors of int32 as bytes. */
static inline void
sim__store_u8x16(uint8_t *out, const sim_v8i *a, const sim_v8i *b)
{
#if defined(__SSE2__)
    __m128i q[4];

    memcpy(&q[0], a, sizeof(*a));
    memcpy(&q[2], b, sizeof(*b));
    _mm_storeu_si128((__m128i *)(void *)out,
                     _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]),
                                      _mm_packs_epi32(q[2], q[3])));
#else
    int k;

    for (k = 0; k < 8; k++) {
        out[k] = (uint8_t)(*a)[k];
        out[8 + k] = (uint8_t)(*b)[k];
    }
#endif
}

#define SIM_LOOP(name) name##_sse2
#include "drivers/sim/loops.h"
#undef SIM_LOOP

#if SIM_AVX2
#pragma GCC push_options
#pragma GCC target("avx2")
#define SIM_LOOP(name) name##_avx2
#include "drivers/sim/loops.h"
#undef SIM_LOOP
#pragma GCC pop_options
#endif

bool
sim__simd_wide(const struct sim_config *c)
{
#if SIM_AVX2
    __builtin_cpu_init();
    return c->simd != 0 && __builtin_cpu_supports("avx2");
#else
    (void)c;
    return false;
#endif
}

void
sim__mix_rows(float *d, const float *const *rows, const float *w, int nk,
              size_t n, bool wide)
{
#if SIM_AVX2
    if (wide) {
        mix_rows_avx2(d, rows, w, nk, n);
        return;
    }
#endif
    (void)wide;
    mix_rows_sse2(d, rows, w, nk, n);
}

void
sim__mix_rows4(float *const *d, const float *const *rows, const float *w,
               int nk, size_t n, bool wide)
{
#if SIM_AVX2
    if (wide) {
        mix_rows4_avx2(d, rows, w, nk, n);
        return;
    }
#endif
    (void)wide;
    mix_rows4_sse2(d, rows, w, nk, n);
}

void
sim__mix_var(float *d, const float *const *rows, const float *const *w,
             int nk, size_t n, bool wide)
{
#if SIM_AVX2
    if (wide) {
        mix_var_avx2(d, rows, w, nk, n);
        return;
    }
#endif
    (void)wide;
    mix_var_sse2(d, rows, w, nk, n);
}

void
sim__mix_sym(float *d, const float *c, const float *const *lo,
             const float *const *hi, const float *w, int nk, size_t n,
             bool wide)
{
#if SIM_AVX2
    if (wide) {
        mix_sym_avx2(d, c, lo, hi, w, nk, n);
        return;
    }
#endif
    (void)wide;
    mix_sym_sse2(d, c, lo, hi, w, nk, n);
}

long
sim__sensor_row(const struct sim__sensor_row *r, size_t n, uint8_t *out,
                bool wide)
{
#if SIM_AVX2
    if (wide)
        return sensor_row_avx2(r, n, out);
#endif
    (void)wide;
    return sensor_row_sse2(r, n, out);
}

void
sim__od_rgb(const float *h, const float *e, const float *a, size_t n,
            const double m[3][3], double scale, const uint8_t *lut,
            int nbins, uint8_t *rgb, bool wide)
{
#if SIM_AVX2
    if (wide) {
        od_rgb_avx2(h, e, a, n, m, scale, lut, nbins, rgb);
        return;
    }
#endif
    (void)wide;
    od_rgb_sse2(h, e, a, n, m, scale, lut, nbins, rgb);
}

void
sim__u8_unit(const uint8_t *s, size_t n, float *d, bool wide)
{
#if SIM_AVX2
    if (wide) {
        u8_unit_avx2(s, n, d);
        return;
    }
#endif
    (void)wide;
    u8_unit_sse2(s, n, d);
}
