/* SPDX-License-Identifier: MIT */
/*
 * Flat-field arithmetic: averaging calibration frames, checking them,
 * and the per-pixel (I - D) / (F - D) correction.  The correction is done
 * through a precomputed gain image so that each tile costs one subtract
 * and one multiply per sample.
 */
#include "imaging/flatfield.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float
sample(const struct img *im, size_t i)
{
    if (im->type == IMG_U8)
        return ((const uint8_t *)im->data)[i];
    return ((const float *)im->data)[i];
}

static size_t
nsamples(const struct img *im)
{
    return (size_t)im->w * im->h * im->c;
}

static int
same_shape(const struct img *a, const struct img *b)
{
    return a->w == b->w && a->h == b->h && a->c == b->c;
}

int
ff_accum_add(struct img **sum, const struct img *frame, struct ss_err *err)
{
    float *s;
    size_t i, n = nsamples(frame);

    if (*sum == NULL) {
        *sum = img_new(frame->w, frame->h, frame->c, IMG_F32);
        if (*sum == NULL)
            return err_set(err, -ENOMEM, "flat-field: no memory for a "
                           "%dx%d frame sum", frame->w, frame->h);
    }
    if (!same_shape(*sum, frame))
        return err_set(err, SS_EFORMAT, "flat-field: frame is %dx%dx%d, "
                       "earlier frames were %dx%dx%d", frame->w, frame->h,
                       frame->c, (*sum)->w, (*sum)->h, (*sum)->c);
    s = (*sum)->data;
    for (i = 0; i < n; i++)
        s[i] += sample(frame, i);
    return 0;
}

void
ff_accum_finish(struct img *sum, int n)
{
    float *s = sum->data;
    size_t i, ns = nsamples(sum);

    if (n <= 1)
        return;
    for (i = 0; i < ns; i++)
        s[i] /= (float)n;
}

double
ff_transmittance(double raw, double dark, double flat)
{
    double signal = flat - dark;

    if (signal < FF_MIN_SIGNAL)
        signal = FF_MIN_SIGNAL;
    return (raw - dark) / signal;
}

static float
dark_at(const struct img *dark, size_t i)
{
    return dark == NULL ? 0.0f : sample(dark, i);
}

double
ff_shading_ratio(const struct img *im, int ch, int block)
{
    int bx, by, x, y, c, nbx = im->w / block, nby = im->h / block;
    double lo = INFINITY, hi = 0;

    for (by = 0; by < nby; by++) {
        for (bx = 0; bx < nbx; bx++) {
            double s = 0;
            long n = 0;
            for (y = by * block; y < (by + 1) * block; y++)
                for (x = bx * block; x < (bx + 1) * block; x++)
                    for (c = 0; c < im->c; c++) {
                        if (ch >= 0 && c != ch)
                            continue;
                        s += sample(im, ((size_t)y * im->w + x) * im->c + c);
                        n++;
                    }
            s /= (double)n;
            lo = s < lo ? s : lo;
            hi = s > hi ? s : hi;
        }
    }
    return lo > 0 ? hi / lo : INFINITY;
}

/* Smoothed F - D extremes for the fall-off figure: 16×16 block means. */
static double
falloff_of(const struct img *dark, const struct img *flat)
{
    struct img *sig = img_new(flat->w, flat->h, flat->c, IMG_F32);
    size_t i, n = nsamples(flat);
    double r;

    if (sig == NULL)
        return NAN;
    for (i = 0; i < n; i++)
        ((float *)sig->data)[i] = sample(flat, i) - dark_at(dark, i);
    r = ff_shading_ratio(sig, -1, flat->w >= 64 ? 16 : 1);
    img_free(sig);
    return isfinite(r) && r > 0 ? 1.0 - 1.0 / r : 1.0;
}

int
ff_check(const struct img *dark, const struct img *flat, struct ff_check *out,
         struct ss_err *err)
{
    size_t i, n = nsamples(flat), npx = (size_t)flat->w * flat->h;
    int c;

    memset(out, 0, sizeof(*out));
    if (dark != NULL && !same_shape(dark, flat))
        return err_set(err, SS_EFORMAT, "flat-field: dark frame %dx%dx%d "
                       "does not match flat frame %dx%dx%d", dark->w,
                       dark->h, dark->c, flat->w, flat->h, flat->c);
    for (c = 0; c < 3; c++) {
        out->signal_min[c] = INFINITY;
        out->signal_max[c] = -INFINITY;
    }
    for (i = 0; i < n; i++) {
        double d = dark_at(dark, i), s = sample(flat, i) - d;
        c = (int)(i % (size_t)flat->c);
        out->signal_min[c] = fmin(out->signal_min[c], s);
        out->signal_max[c] = fmax(out->signal_max[c], s);
        out->dark_mean[c] += d / (double)npx;
        if (s < FF_MIN_SIGNAL)
            out->weak_px++;
        if (sample(flat, i) >= 254.0f)
            out->clipped_px++;
    }
    out->falloff = falloff_of(dark, flat);
    if ((double)out->weak_px > 0.01 * (double)n)
        return err_set(err, SS_EFORMAT, "flat-field: %ld of %zu samples "
                       "have less than %.0f counts above dark (lamp off, "
                       "light path blocked or flat taken on tissue)",
                       out->weak_px, n, FF_MIN_SIGNAL);
    if ((double)out->clipped_px > 0.01 * (double)n)
        return err_set(err, SS_ECONFIG, "flat-field: %ld of %zu samples "
                       "of the blank field are clipped (exposure too long "
                       "for this lamp)", out->clipped_px, n);
    return 0;
}

static int
cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

/* Median of one channel's F - D, the fallback gain for weak pixels. */
static double
median_signal(const struct img *dark, const struct img *flat, int c)
{
    size_t npx = (size_t)flat->w * flat->h, i;
    float *v = malloc(npx * sizeof(*v));
    double m;

    if (v == NULL)
        return FF_MIN_SIGNAL;
    for (i = 0; i < npx; i++) {
        size_t k = i * flat->c + c;
        v[i] = sample(flat, k) - dark_at(dark, k);
    }
    qsort(v, npx, sizeof(*v), cmp_float);
    m = v[npx / 2];
    free(v);
    return m < FF_MIN_SIGNAL ? FF_MIN_SIGNAL : m;
}

struct img *
ff_gain_new(const struct img *dark, const struct img *flat, double white)
{
    struct img *g = img_new(flat->w, flat->h, flat->c, IMG_F32);
    double fallback[4];
    size_t i, n;
    int c;

    if (g == NULL)
        return NULL;
    for (c = 0; c < flat->c; c++)
        fallback[c] = white / median_signal(dark, flat, c);
    n = nsamples(flat);
    for (i = 0; i < n; i++) {
        double s = sample(flat, i) - dark_at(dark, i);
        ((float *)g->data)[i] = (float)(s >= FF_MIN_SIGNAL ? white / s :
                                        fallback[i % (size_t)flat->c]);
    }
    return g;
}

int
ff_apply(const struct img *raw, const struct img *dark,
         const struct img *gain, struct img **out, struct ss_err *err)
{
    const float *g = gain->data;
    uint8_t *o;
    size_t i, n;

    *out = NULL;
    if (!same_shape(raw, gain) || (dark != NULL && !same_shape(raw, dark)))
        return err_set(err, SS_EFORMAT, "flat-field: frame %dx%dx%d does "
                       "not match the calibration %dx%dx%d", raw->w, raw->h,
                       raw->c, gain->w, gain->h, gain->c);
    *out = img_new(raw->w, raw->h, raw->c, IMG_U8);
    if (*out == NULL)
        return err_set(err, -ENOMEM, "flat-field: no memory for a %dx%d "
                       "frame", raw->w, raw->h);
    o = (*out)->data;
    n = nsamples(raw);
    for (i = 0; i < n; i++) {
        float v = (sample(raw, i) - dark_at(dark, i)) * g[i];
        o[i] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v);
    }
    return 0;
}

int
ff_correct(const struct img *raw, const struct img *dark,
           const struct img *flat, double white, struct img **out,
           struct ss_err *err)
{
    struct img *g;
    int rc;

    *out = NULL;
    if (!same_shape(raw, flat))
        return err_set(err, SS_EFORMAT, "flat-field: frame %dx%dx%d does "
                       "not match the flat %dx%dx%d", raw->w, raw->h,
                       raw->c, flat->w, flat->h, flat->c);
    g = ff_gain_new(dark, flat, white);
    if (g == NULL)
        return err_set(err, -ENOMEM, "flat-field: no memory for the gain");
    rc = ff_apply(raw, dark, g, out, err);
    img_free(g);
    return rc;
}
