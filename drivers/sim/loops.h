/* SPDX-License-Identifier: MIT */
/*
 * The hot loops of frame synthesis, written once and compiled twice by
 * simd.c: for SSE2 (every x86-64; each eight-float vector is two SSE
 * vectors) and for AVX2 (one vector), with names from SIM_LOOP(name).
 * Only simd.c includes this file.
 *
 * Every output sample is computed by the same IEEE single-precision
 * operations in the same order in both builds (lane by lane, no fused
 * multiply-add, no reassociation), so both give the same bits and the
 * choice between them is one of speed only.  Weighted sums accumulate in
 * tap order, first tap first; that order is part of what a frame is.
 */

/* d = sum_k w[k] * rows[k] over n floats, 32 at a time in four
 * independent accumulators. */
static void
SIM_LOOP(mix_rows)(float *d, const float *const *rows, const float *w,
                   int nk, size_t n)
{
    size_t i = 0;
    int j;

    for (; i + 32 <= n; i += 32) {
        sim_v8 wj = sim__one8 * w[0], a0, a1, a2, a3, x0, x1, x2, x3;

        sim__ld8(&x0, rows[0] + i);
        sim__ld8(&x1, rows[0] + i + 8);
        sim__ld8(&x2, rows[0] + i + 16);
        sim__ld8(&x3, rows[0] + i + 24);
        a0 = wj * x0;
        a1 = wj * x1;
        a2 = wj * x2;
        a3 = wj * x3;
        for (j = 1; j < nk; j++) {
            const float *r = rows[j] + i;

            wj = sim__one8 * w[j];
            sim__ld8(&x0, r);
            sim__ld8(&x1, r + 8);
            sim__ld8(&x2, r + 16);
            sim__ld8(&x3, r + 24);
            a0 += wj * x0;
            a1 += wj * x1;
            a2 += wj * x2;
            a3 += wj * x3;
        }
        sim__st8(d + i, &a0);
        sim__st8(d + i + 8, &a1);
        sim__st8(d + i + 16, &a2);
        sim__st8(d + i + 24, &a3);
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

    for (; i + 16 <= n; i += 16) {
        sim_v8 a0, a1, b0, b1, c0, c1, e0, e1, x0, x1;

        sim__ld8(&x0, rows[0] + i);
        sim__ld8(&x1, rows[0] + i + 8);
        a0 = w[0] * x0;
        a1 = w[0] * x1;
        sim__ld8(&x0, rows[1] + i);
        sim__ld8(&x1, rows[1] + i + 8);
        a0 += w[1] * x0;
        a1 += w[1] * x1;
        b0 = w[0] * x0;
        b1 = w[0] * x1;
        sim__ld8(&x0, rows[2] + i);
        sim__ld8(&x1, rows[2] + i + 8);
        a0 += w[2] * x0;
        a1 += w[2] * x1;
        b0 += w[1] * x0;
        b1 += w[1] * x1;
        c0 = w[0] * x0;
        c1 = w[0] * x1;
        sim__ld8(&x0, rows[3] + i);
        sim__ld8(&x1, rows[3] + i + 8);
        a0 += w[3] * x0;
        a1 += w[3] * x1;
        b0 += w[2] * x0;
        b1 += w[2] * x1;
        c0 += w[1] * x0;
        c1 += w[1] * x1;
        e0 = w[0] * x0;
        e1 = w[0] * x1;
        for (q = 4; q < nk; q++) {
            sim__ld8(&x0, rows[q] + i);
            sim__ld8(&x1, rows[q] + i + 8);
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
            sim__ld8(&x0, rows[q] + i);
            sim__ld8(&x1, rows[q] + i + 8);
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
        sim__st8(d[0] + i, &a0);
        sim__st8(d[0] + i + 8, &a1);
        sim__st8(d[1] + i, &b0);
        sim__st8(d[1] + i + 8, &b1);
        sim__st8(d[2] + i, &c0);
        sim__st8(d[2] + i + 8, &c1);
        sim__st8(d[3] + i, &e0);
        sim__st8(d[3] + i + 8, &e1);
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

    for (; i + 16 <= n; i += 16) {
        sim_v8 a0, a1, x0, x1, w0, w1;

        sim__ld8(&x0, rows[0] + i);
        sim__ld8(&x1, rows[0] + i + 8);
        sim__ld8(&w0, w[0] + i);
        sim__ld8(&w1, w[0] + i + 8);
        a0 = w0 * x0;
        a1 = w1 * x1;
        for (j = 1; j < nk; j++) {
            sim__ld8(&x0, rows[j] + i);
            sim__ld8(&x1, rows[j] + i + 8);
            sim__ld8(&w0, w[j] + i);
            sim__ld8(&w1, w[j] + i + 8);
            a0 += w0 * x0;
            a1 += w1 * x1;
        }
        sim__st8(d + i, &a0);
        sim__st8(d + i + 8, &a1);
    }
    for (; i < n; i++) {
        float acc = w[0][i] * rows[0][i];

        for (j = 1; j < nk; j++)
            acc += w[j][i] * rows[j][i];
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

    for (; i + 32 <= n; i += 32) {
        sim_v8 wj = sim__one8 * w[0], a0, a1, a2, a3, x0, x1, x2, x3;
        sim_v8 y0, y1, y2, y3;

        sim__ld8(&x0, c + i);
        sim__ld8(&x1, c + i + 8);
        sim__ld8(&x2, c + i + 16);
        sim__ld8(&x3, c + i + 24);
        a0 = wj * x0;
        a1 = wj * x1;
        a2 = wj * x2;
        a3 = wj * x3;
        for (j = 1; j < nk; j++) {
            const float *p = lo[j] + i, *q = hi[j] + i;

            wj = sim__one8 * w[j];
            sim__ld8(&x0, p);
            sim__ld8(&x1, p + 8);
            sim__ld8(&x2, p + 16);
            sim__ld8(&x3, p + 24);
            sim__ld8(&y0, q);
            sim__ld8(&y1, q + 8);
            sim__ld8(&y2, q + 16);
            sim__ld8(&y3, q + 24);
            a0 += wj * (x0 + y0);
            a1 += wj * (x1 + y1);
            a2 += wj * (x2 + y2);
            a3 += wj * (x3 + y3);
        }
        sim__st8(d + i, &a0);
        sim__st8(d + i + 8, &a1);
        sim__st8(d + i + 16, &a2);
        sim__st8(d + i + 24, &a3);
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
SIM_LOOP(vsqrt)(sim_v8 *x)
{
    sim_v8 y, half = *x * 0.5f;
    sim_v8i i;

    memcpy(&i, x, sizeof(i));
    i = 0x5f3759df - (i >> 1);
    memcpy(&y, &i, sizeof(y));
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    *x = *x * y;
}

/* DN of samples i..i+7 before rounding: signal = scale × vignetting ×
 * transmittance (negative taken as 0), noise σ = sqrt(signal × kvar +
 * read²), DN = dark + signal + σ × N(0, 1). */
static inline __attribute__((always_inline)) void
SIM_LOOP(sensor_dn)(const struct sim__sensor_row *r, size_t i, sim_v8 *dn)
{
    sim_v8 scale, cvig, cx, t, kvar, nz, g, sig, sd;
    sim_v8i pos;

    sim__ld8(&scale, r->scale + i);
    sim__ld8(&cvig, r->cvig + i);
    sim__ld8(&cx, r->cx + i);
    sim__ld8(&t, r->t + i);
    sim__ld8(&kvar, r->kvar + i);
    sim__ld8(&nz, r->noise + i);
    g = scale * (1.0f - cvig * (cx + r->cy));
    sig = g * t;
    pos = sig > 0.0f;
    sig = (sim_v8)((sim_v8i)sig & pos);
    sd = sig * kvar + r->rd2;
    SIM_LOOP(vsqrt)(&sd);
    *dn = r->dark + sig + sd * nz;
}

/* DN clamped to [0, 254.5]: adding 0.5 and truncating then gives 255 from
 * 254.5 up, 0 at or below 0 and rounds half up in between.  Lanes from
 * 254.5 up (saturated) are counted in *sat, as -1 each. */
static inline __attribute__((always_inline)) void
SIM_LOOP(sensor_level)(const sim_v8 *dnp, sim_v8i *sat, sim_v8i *level)
{
    sim_v8 dn = *dnp, cap = sim__one8 * 254.5f;
    sim_v8i top = dn >= 254.5f, keep = dn > 0.0f;

    *sat += top;
    dn = (sim_v8)(((sim_v8i)dn & keep & ~top) | ((sim_v8i)cap & top));
    *level = __builtin_convertvector(dn + 0.5f, sim_v8i);
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
    sim_v8i sat8 = { 0, 0, 0, 0, 0, 0, 0, 0 };
    size_t i = 0;
    long sat;

    for (; i + 16 <= n; i += 16) {
        sim_v8 da, db;
        sim_v8i a, b;

        SIM_LOOP(sensor_dn)(r, i, &da);
        SIM_LOOP(sensor_dn)(r, i + 8, &db);
        SIM_LOOP(sensor_level)(&da, &sat8, &a);
        SIM_LOOP(sensor_level)(&db, &sat8, &b);
        sim__store_u8x16(out + i, &a, &b);
    }
    sat = -(long)(sat8[0] + sat8[1] + sat8[2] + sat8[3] + sat8[4] +
                  sat8[5] + sat8[6] + sat8[7]);
    if (i < n) {
        sim_v8 a, b;

        SIM_LOOP(sensor_dn)(r, i, &a);
        SIM_LOOP(sensor_dn)(r, i + 8, &b);
        sim__st8(r->dn, &a);
        sim__st8(r->dn + 8, &b);
    }
    for (; i < n; i++) {
        float dn = r->dn[i & 15];

        if (dn >= 254.5f) {
            out[i] = 255;
            sat++;
        } else {
            out[i] = dn <= 0 ? 0 : (uint8_t)(dn + 0.5f);
        }
    }
    return sat;
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
    size_t i = 0;
    int c, q;

    for (; i + 4 <= n; i += 4) {
        sim_v4 fh, fe, fa;
        sim_v4d dh, de, da, d;
        sim_v4i k;

        memcpy(&fh, h + i, sizeof(fh));
        memcpy(&fe, e + i, sizeof(fe));
        memcpy(&fa, a + i, sizeof(fa));
        k = (fh == 0.0f) & (fe == 0.0f) & (fa == 0.0f);
        if (k[0] & k[1] & k[2] & k[3]) {
            /* Four pixels of glass: density 0, bin 0. */
            for (q = 0; q < 4; q++)
                for (c = 0; c < 3; c++)
                    rgb[(i + q) * 3 + c] = lut[c * nbins];
            continue;
        }
        dh = __builtin_convertvector(fh, sim_v4d);
        de = __builtin_convertvector(fe, sim_v4d);
        da = __builtin_convertvector(fa, sim_v4d);
        for (c = 0; c < 3; c++) {
            d = dh * m[c][0] + de * m[c][1] + da * m[c][2];
            k = __builtin_convertvector(d * scale + 0.5, sim_v4i);
            k = k & ~(k < 0);
            k = (k & (k < nbins)) | ((nbins - 1) & ~(k < nbins));
            for (q = 0; q < 4; q++)
                rgb[(i + q) * 3 + c] = lut[c * nbins + k[q]];
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
