/* SPDX-License-Identifier: MIT */
/*
 * The hot loops of frame synthesis, written once and compiled twice by
 * simd.c: for SSE2 (every x86-64) with vectors of 4 floats and for AVX2
 * with vectors of 8, with names from SIM_LOOP(name).  The includer
 * defines the vector types:
 *   SL_VF   floats, SL_L lanes           SL_VI   int32, SL_L lanes
 *   SL_VH   floats, SL_L / 2 lanes       SL_VD   doubles, SL_L / 2 lanes
 *   SL_VDI  int32, SL_L / 2 lanes
 * Only simd.c includes this file.
 *
 * Every output sample is computed by the same IEEE operations in the same
 * order in both builds (lane by lane, no fused multiply-add, no
 * reassociation), so both give the same bits and the choice between them
 * is one of speed only.  Weighted sums accumulate in tap order, first tap
 * first; that order is part of what a frame is.
 */

static inline __attribute__((always_inline)) void
SIM_LOOP(ld)(SL_VF *v, const float *p)
{
    memcpy(v, p, sizeof(*v));
}

static inline __attribute__((always_inline)) void
SIM_LOOP(st)(float *p, const SL_VF *v)
{
    memcpy(p, v, sizeof(*v));
}

/* d = sum_k w[k] * rows[k] over n floats, four vectors at a time in
 * independent accumulators. */
static void
SIM_LOOP(mix_rows)(float *d, const float *const *rows, const float *w,
                   int nk, size_t n)
{
    size_t i = 0;
    int j;

    for (; i + 4 * SL_L <= n; i += 4 * SL_L) {
        SL_VF a0, a1, a2, a3, x0, x1, x2, x3;
        const float *r = rows[0] + i;

        SIM_LOOP(ld)(&x0, r);
        SIM_LOOP(ld)(&x1, r + SL_L);
        SIM_LOOP(ld)(&x2, r + 2 * SL_L);
        SIM_LOOP(ld)(&x3, r + 3 * SL_L);
        a0 = w[0] * x0;
        a1 = w[0] * x1;
        a2 = w[0] * x2;
        a3 = w[0] * x3;
        for (j = 1; j < nk; j++) {
            r = rows[j] + i;
            SIM_LOOP(ld)(&x0, r);
            SIM_LOOP(ld)(&x1, r + SL_L);
            SIM_LOOP(ld)(&x2, r + 2 * SL_L);
            SIM_LOOP(ld)(&x3, r + 3 * SL_L);
            a0 += w[j] * x0;
            a1 += w[j] * x1;
            a2 += w[j] * x2;
            a3 += w[j] * x3;
        }
        SIM_LOOP(st)(d + i, &a0);
        SIM_LOOP(st)(d + i + SL_L, &a1);
        SIM_LOOP(st)(d + i + 2 * SL_L, &a2);
        SIM_LOOP(st)(d + i + 3 * SL_L, &a3);
    }
    for (; i < n; i++) {
        float acc = w[0] * rows[0][i];

        for (j = 1; j < nk; j++)
            acc += w[j] * rows[j][i];
        d[i] = acc;
    }
}

/* Four outputs at once from nk + 3 consecutive input rows: d[k] =
 * sum_t w[t] * rows[k + t], each accumulated in tap order exactly as
 * mix_rows() does, but every input vector is loaded once for the four
 * outputs instead of once per output (nk >= 4). */
static void
SIM_LOOP(mix_rows4)(float *const *d, const float *const *rows,
                    const float *w, int nk, size_t n)
{
    size_t i = 0;
    int q, k;

    for (; i + 2 * SL_L <= n; i += 2 * SL_L) {
        SL_VF a0, a1, b0, b1, c0, c1, e0, e1, x0, x1;

        SIM_LOOP(ld)(&x0, rows[0] + i);
        SIM_LOOP(ld)(&x1, rows[0] + i + SL_L);
        a0 = w[0] * x0;
        a1 = w[0] * x1;
        SIM_LOOP(ld)(&x0, rows[1] + i);
        SIM_LOOP(ld)(&x1, rows[1] + i + SL_L);
        a0 += w[1] * x0;
        a1 += w[1] * x1;
        b0 = w[0] * x0;
        b1 = w[0] * x1;
        SIM_LOOP(ld)(&x0, rows[2] + i);
        SIM_LOOP(ld)(&x1, rows[2] + i + SL_L);
        a0 += w[2] * x0;
        a1 += w[2] * x1;
        b0 += w[1] * x0;
        b1 += w[1] * x1;
        c0 = w[0] * x0;
        c1 = w[0] * x1;
        SIM_LOOP(ld)(&x0, rows[3] + i);
        SIM_LOOP(ld)(&x1, rows[3] + i + SL_L);
        a0 += w[3] * x0;
        a1 += w[3] * x1;
        b0 += w[2] * x0;
        b1 += w[2] * x1;
        c0 += w[1] * x0;
        c1 += w[1] * x1;
        e0 = w[0] * x0;
        e1 = w[0] * x1;
        for (q = 4; q < nk; q++) {
            SIM_LOOP(ld)(&x0, rows[q] + i);
            SIM_LOOP(ld)(&x1, rows[q] + i + SL_L);
            a0 += w[q] * x0;
            a1 += w[q] * x1;
            b0 += w[q - 1] * x0;
            b1 += w[q - 1] * x1;
            c0 += w[q - 2] * x0;
            c1 += w[q - 2] * x1;
            e0 += w[q - 3] * x0;
            e1 += w[q - 3] * x1;
        }
        for (; q < nk + 3; q++) {
            SIM_LOOP(ld)(&x0, rows[q] + i);
            SIM_LOOP(ld)(&x1, rows[q] + i + SL_L);
            if (q - 1 < nk) {
                b0 += w[q - 1] * x0;
                b1 += w[q - 1] * x1;
            }
            if (q - 2 < nk) {
                c0 += w[q - 2] * x0;
                c1 += w[q - 2] * x1;
            }
            e0 += w[q - 3] * x0;
            e1 += w[q - 3] * x1;
        }
        SIM_LOOP(st)(d[0] + i, &a0);
        SIM_LOOP(st)(d[0] + i + SL_L, &a1);
        SIM_LOOP(st)(d[1] + i, &b0);
        SIM_LOOP(st)(d[1] + i + SL_L, &b1);
        SIM_LOOP(st)(d[2] + i, &c0);
        SIM_LOOP(st)(d[2] + i + SL_L, &c1);
        SIM_LOOP(st)(d[3] + i, &e0);
        SIM_LOOP(st)(d[3] + i + SL_L, &e1);
    }
    for (; i < n; i++) {
        for (k = 0; k < 4; k++) {
            float acc = w[0] * rows[k][i];

            for (q = 1; q < nk; q++)
                acc += w[q] * rows[k + q][i];
            d[k][i] = acc;
        }
    }
}

/* d = sum_k w[k] * rows[k] with a weight per sample: d[i] = w[0][i] *
 * rows[0][i] + w[1][i] * rows[1][i] + ... in tap order. */
static void
SIM_LOOP(mix_var)(float *d, const float *const *rows,
                  const float *const *w, int nk, size_t n)
{
    size_t i = 0;
    int j;

    for (; i + 2 * SL_L <= n; i += 2 * SL_L) {
        SL_VF a0, a1, x0, x1, w0, w1;

        SIM_LOOP(ld)(&x0, rows[0] + i);
        SIM_LOOP(ld)(&x1, rows[0] + i + SL_L);
        SIM_LOOP(ld)(&w0, w[0] + i);
        SIM_LOOP(ld)(&w1, w[0] + i + SL_L);
        a0 = w0 * x0;
        a1 = w1 * x1;
        for (j = 1; j < nk; j++) {
            SIM_LOOP(ld)(&x0, rows[j] + i);
            SIM_LOOP(ld)(&x1, rows[j] + i + SL_L);
            SIM_LOOP(ld)(&w0, w[j] + i);
            SIM_LOOP(ld)(&w1, w[j] + i + SL_L);
            a0 += w0 * x0;
            a1 += w1 * x1;
        }
        SIM_LOOP(st)(d + i, &a0);
        SIM_LOOP(st)(d + i + SL_L, &a1);
    }
    for (; i < n; i++) {
        float acc = w[0][i] * rows[0][i];

        for (j = 1; j < nk; j++)
            acc += w[j][i] * rows[j][i];
        d[i] = acc;
    }
}

/* SL_L source floats s[idx[l] + off] (AVX2: one gather instruction). */
static inline __attribute__((always_inline)) SL_VF
SIM_LOOP(gather)(const float *s, const int32_t *idx, int off)
{
#if SL_L == 8
    __m256i i;

    memcpy(&i, idx, sizeof(i));
    return (SL_VF)_mm256_i32gather_ps(s + off, i, 4);
#else
    float g[SL_L];
    SL_VF v;
    int l;

    for (l = 0; l < SL_L; l++)
        g[l] = s[idx[l] + off];
    memcpy(&v, g, sizeof(v));
    return v;
#endif
}

/* d[i] = sum_j w[j * n + i] * s[idx[i] + 3 * j], accumulated from 0 in tap
 * order exactly as the scalar resampling loop does, two vectors at a
 * time in independent accumulators. */
static void
SIM_LOOP(mix_gather)(float *d, const float *s, const int32_t *idx,
                     const float *w, int nk, size_t n)
{
    size_t i = 0;
    int j;

    for (; i + 2 * SL_L <= n; i += 2 * SL_L) {
        SL_VF a0 = { 0 }, a1 = { 0 }, w0, w1;

        for (j = 0; j < nk; j++) {
            SIM_LOOP(ld)(&w0, w + (size_t)j * n + i);
            SIM_LOOP(ld)(&w1, w + (size_t)j * n + i + SL_L);
            a0 += w0 * SIM_LOOP(gather)(s, idx + i, 3 * j);
            a1 += w1 * SIM_LOOP(gather)(s, idx + i + SL_L, 3 * j);
        }
        SIM_LOOP(st)(d + i, &a0);
        SIM_LOOP(st)(d + i + SL_L, &a1);
    }
    for (; i < n; i++) {
        float acc = 0;

        for (j = 0; j < nk; j++)
            acc += w[(size_t)j * n + i] * s[idx[i] + 3 * j];
        d[i] = acc;
    }
}

/* d = w[0] * c + sum_k w[k] * (lo[k] + hi[k]): a symmetric kernel with
 * half the multiplications. */
static void
SIM_LOOP(mix_sym)(float *d, const float *c, const float *const *lo,
                  const float *const *hi, const float *w, int nk, size_t n)
{
    size_t i = 0;
    int j;

    for (; i + 4 * SL_L <= n; i += 4 * SL_L) {
        SL_VF a0, a1, a2, a3, x0, x1, x2, x3, y0, y1, y2, y3;

        SIM_LOOP(ld)(&x0, c + i);
        SIM_LOOP(ld)(&x1, c + i + SL_L);
        SIM_LOOP(ld)(&x2, c + i + 2 * SL_L);
        SIM_LOOP(ld)(&x3, c + i + 3 * SL_L);
        a0 = w[0] * x0;
        a1 = w[0] * x1;
        a2 = w[0] * x2;
        a3 = w[0] * x3;
        for (j = 1; j < nk; j++) {
            const float *p = lo[j] + i, *q = hi[j] + i;

            SIM_LOOP(ld)(&x0, p);
            SIM_LOOP(ld)(&x1, p + SL_L);
            SIM_LOOP(ld)(&x2, p + 2 * SL_L);
            SIM_LOOP(ld)(&x3, p + 3 * SL_L);
            SIM_LOOP(ld)(&y0, q);
            SIM_LOOP(ld)(&y1, q + SL_L);
            SIM_LOOP(ld)(&y2, q + 2 * SL_L);
            SIM_LOOP(ld)(&y3, q + 3 * SL_L);
            a0 += w[j] * (x0 + y0);
            a1 += w[j] * (x1 + y1);
            a2 += w[j] * (x2 + y2);
            a3 += w[j] * (x3 + y3);
        }
        SIM_LOOP(st)(d + i, &a0);
        SIM_LOOP(st)(d + i + SL_L, &a1);
        SIM_LOOP(st)(d + i + 2 * SL_L, &a2);
        SIM_LOOP(st)(d + i + 3 * SL_L, &a3);
    }
    for (; i < n; i++) {
        float acc = w[0] * c[i];

        for (j = 1; j < nk; j++)
            acc += w[j] * (lo[j][i] + hi[j][i]);
        d[i] = acc;
    }
}

/* sqrt for x > 0 without libm: bit-level estimate of 1/sqrt, two Newton
 * steps (relative error near 1e-6), times x. */
static inline __attribute__((always_inline)) void
SIM_LOOP(vsqrt)(SL_VF *x)
{
    SL_VF y, half = *x * 0.5f;
    SL_VI i;

    memcpy(&i, x, sizeof(i));
    i = 0x5f3759df - (i >> 1);
    memcpy(&y, &i, sizeof(y));
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    *x = *x * y;
}

/* DN of the SL_L samples from i before rounding: signal = scale ×
 * vignetting × transmittance (negative taken as 0), noise σ =
 * sqrt(signal × kvar + read²), DN = dark + signal + σ × N(0, 1). */
static inline __attribute__((always_inline)) void
SIM_LOOP(sensor_dn)(const struct sim__sensor_row *r, size_t i, SL_VF *dn)
{
    SL_VF scale, cvig, cx, t, kvar, nz, g, sig, sd;
    SL_VI pos;

    SIM_LOOP(ld)(&scale, r->scale + i);
    SIM_LOOP(ld)(&cvig, r->cvig + i);
    SIM_LOOP(ld)(&cx, r->cx + i);
    SIM_LOOP(ld)(&t, r->t + i);
    SIM_LOOP(ld)(&kvar, r->kvar + i);
    SIM_LOOP(ld)(&nz, r->noise + i);
    g = scale * (1.0f - cvig * (cx + r->cy));
    sig = g * t;
    pos = sig > 0.0f;
    sig = (SL_VF)((SL_VI)sig & pos);
    sd = sig * kvar + r->rd2;
    SIM_LOOP(vsqrt)(&sd);
    *dn = r->dark + sig + sd * nz;
}

/* DN clamped to [0, 254.5]: adding 0.5 and truncating then gives 255 from
 * 254.5 up, 0 at or below 0 and rounds half up in between.  Lanes from
 * 254.5 up (saturated) are counted in *sat, as -1 each. */
static inline __attribute__((always_inline)) void
SIM_LOOP(sensor_level)(const SL_VF *dnp, SL_VI *sat, SL_VI *level)
{
    SL_VF dn = *dnp, cap = (SL_VF){ 0 } + 254.5f;
    SL_VI top = dn >= 254.5f, keep = dn > 0.0f;

    *sat += top;
    dn = (SL_VF)(((SL_VI)dn & keep & ~top) | ((SL_VI)cap & top));
    *level = __builtin_convertvector(dn + 0.5f, SL_VI);
}

/* One sensor row of n samples into out; returns the saturated count.
 * The row's arrays hold at least n rounded up to 16 values; the lanes
 * past n are computed and dropped.  r->dn is scratch of 16 floats. */
static long
SIM_LOOP(sensor_row)(const struct sim__sensor_row *rp, size_t n,
                     uint8_t *out)
{
    /* A local copy: stores through out may not alias it, so its fields
     * stay in registers. */
    const struct sim__sensor_row row = *rp, *r = &row;
    SL_VI sat = { 0 }, lv[16 / SL_L];
    int32_t lanes[16];
    size_t i = 0;
    long nsat = 0;
    int k;

    for (; i + 16 <= n; i += 16) {
        for (k = 0; k < 16 / SL_L; k++) {
            SL_VF dn;

            SIM_LOOP(sensor_dn)(r, i + (size_t)k * SL_L, &dn);
            SIM_LOOP(sensor_level)(&dn, &sat, &lv[k]);
        }
        sim__store_u8x16(out + i, lv);
    }
    memcpy(lanes, &sat, sizeof(sat));
    for (k = 0; k < SL_L; k++)
        nsat -= lanes[k];
    for (k = 0; i + (size_t)k * SL_L < n; k++) {
        SL_VF dn;

        SIM_LOOP(sensor_dn)(r, i + (size_t)k * SL_L, &dn);
        SIM_LOOP(st)(r->dn + (size_t)k * SL_L, &dn);
    }
    for (; i < n; i++) {
        float dn = r->dn[i & 15];

        if (dn >= 254.5f) {
            out[i] = 255;
            nsat++;
        } else {
            out[i] = dn <= 0 ? 0 : (uint8_t)(dn + 0.5f);
        }
    }
    return nsat;
}

/* Beer–Lambert to 8 bits for n pixels of stain amounts in planes h, e, a:
 * per channel c the optical density d = h·m[c][0] + e·m[c][1] +
 * a·m[c][2] (double), its bin (int)(d·scale + 0.5) clamped to
 * [0, nbins), and rgb[3i + c] = lut[c·nbins + bin]. */
static void
SIM_LOOP(od_rgb)(const float *h, const float *e, const float *a, size_t n,
                 const double m[3][3], double scale, const uint8_t *lut,
                 int nbins, uint8_t *rgb)
{
    const int nl = SL_L / 2;
    size_t i = 0;
    int c, q;

    for (; i + (size_t)nl <= n; i += (size_t)nl) {
        SL_VH fh, fe, fa;
        SL_VD dh, de, da, d;
        SL_VDI k;
        int32_t b[SL_L / 2];

        memcpy(&fh, h + i, sizeof(fh));
        memcpy(&fe, e + i, sizeof(fe));
        memcpy(&fa, a + i, sizeof(fa));
        k = (fh == 0.0f) & (fe == 0.0f) & (fa == 0.0f);
        memcpy(b, &k, sizeof(b));
        for (q = 0; q < nl && b[q] != 0; q++)
            ;
        if (q == nl) {
            /* Glass: density 0, bin 0. */
            for (q = 0; q < nl; q++)
                for (c = 0; c < 3; c++)
                    rgb[(i + (size_t)q) * 3 + c] = lut[c * nbins];
            continue;
        }
        dh = __builtin_convertvector(fh, SL_VD);
        de = __builtin_convertvector(fe, SL_VD);
        da = __builtin_convertvector(fa, SL_VD);
        for (c = 0; c < 3; c++) {
            d = dh * m[c][0] + de * m[c][1] + da * m[c][2];
            k = __builtin_convertvector(d * scale + 0.5, SL_VDI);
            k = k & ~(k < 0);
            k = (k & (k < nbins)) | ((nbins - 1) & ~(k < nbins));
            memcpy(b, &k, sizeof(b));
            for (q = 0; q < nl; q++)
                rgb[(i + (size_t)q) * 3 + c] = lut[c * nbins + b[q]];
        }
    }
    for (; i < n; i++) {
        for (c = 0; c < 3; c++) {
            double d = h[i] * m[c][0] + e[i] * m[c][1] + a[i] * m[c][2];
            int k = (int)(d * scale + 0.5);

            if (k >= nbins)
                k = nbins - 1;
            if (k < 0)
                k = 0;
            rgb[i * 3 + c] = lut[c * nbins + k];
        }
    }
}

/* d[i] = s[i] / 255 as (float)s[i] * (1.0f / 255), for n samples. */
static void
SIM_LOOP(u8_unit)(const uint8_t *s, size_t n, float *d)
{
    size_t i = 0;

#if defined(__SSE2__)
    const __m128 k = _mm_set1_ps(1.0f / 255);
    const __m128i z = _mm_setzero_si128();

    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i lo = _mm_unpacklo_epi8(b, z), hi = _mm_unpackhi_epi8(b, z);

        _mm_storeu_ps(d + i, _mm_mul_ps(_mm_cvtepi32_ps(
                                 _mm_unpacklo_epi16(lo, z)), k));
        _mm_storeu_ps(d + i + 4, _mm_mul_ps(_mm_cvtepi32_ps(
                                     _mm_unpackhi_epi16(lo, z)), k));
        _mm_storeu_ps(d + i + 8, _mm_mul_ps(_mm_cvtepi32_ps(
                                     _mm_unpacklo_epi16(hi, z)), k));
        _mm_storeu_ps(d + i + 12, _mm_mul_ps(_mm_cvtepi32_ps(
                                      _mm_unpackhi_epi16(hi, z)), k));
    }
#endif
    for (; i < n; i++)
        d[i] = s[i] * (1.0f / 255);
}
