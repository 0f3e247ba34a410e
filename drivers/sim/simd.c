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
#if SIM_AVX2
#include <immintrin.h>
#endif

/* Stores sixteen values 0..255 held as int32 (16 in a row at v) as
 * bytes. */
static inline __attribute__((always_inline)) void
sim__store_u8x16(uint8_t *out, const void *v)
{
#if defined(__SSE2__)
    const __m128i *q = v;

    _mm_storeu_si128((__m128i *)(void *)out,
                     _mm_packus_epi16(
                         _mm_packs_epi32(_mm_loadu_si128(q),
                                         _mm_loadu_si128(q + 1)),
                         _mm_packs_epi32(_mm_loadu_si128(q + 2),
                                         _mm_loadu_si128(q + 3))));
#else
    int32_t l[16];
    int k;

    memcpy(l, v, sizeof(l));
    for (k = 0; k < 16; k++)
        out[k] = (uint8_t)l[k];
#endif
}

typedef float sim_v2 __attribute__((vector_size(8)));
typedef double sim_v2d __attribute__((vector_size(16)));
typedef int32_t sim_v2i __attribute__((vector_size(8)));

#define SIM_LOOP(name) name##_sse2
#define SL_L 4
#define SL_VF sim_v4
#define SL_VI sim_v4i
#define SL_VH sim_v2
#define SL_VD sim_v2d
#define SL_VDI sim_v2i
#include "drivers/sim/loops.h"
#undef SIM_LOOP
#undef SL_L
#undef SL_VF
#undef SL_VI
#undef SL_VH
#undef SL_VD
#undef SL_VDI

#if SIM_AVX2
#pragma GCC push_options
#pragma GCC target("avx2")
#define SIM_LOOP(name) name##_avx2
#define SL_L 8
#define SL_VF sim_v8
#define SL_VI sim_v8i
#define SL_VH sim_v4
#define SL_VD sim_v4d
#define SL_VDI sim_v4i
#include "drivers/sim/loops.h"
#undef SIM_LOOP
#undef SL_L
#undef SL_VF
#undef SL_VI
#undef SL_VH
#undef SL_VD
#undef SL_VDI
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
sim__mix_gather(float *d, const float *s, const int32_t *idx, const float *w,
                int nk, size_t n, bool wide)
{
#if SIM_AVX2
    if (wide) {
        mix_gather_avx2(d, s, idx, w, nk, n);
        return;
    }
#endif
    (void)wide;
    mix_gather_sse2(d, s, idx, w, nk, n);
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
