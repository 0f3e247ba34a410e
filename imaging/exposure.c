/* SPDX-License-Identifier: MIT */
/* Saturation and darkness of raw frames against their calibration. */
#include "imaging/exposure.h"

#include <math.h>
#include <string.h>

#include "imaging/flatfield.h"

#define TBINS 512                   /* transmittance histogram, 0..2 */

void
exp_limits_default(struct exp_limits *l)
{
    l->sat_level = 255;
    l->sat_frac_max = 0.005;
    l->tissue_t_max = 0.85;
    l->dark_t_min = 0.25;
}

static double
pixf(const struct img *im, size_t i)
{
    if (im->type == IMG_U8)
        return ((const uint8_t *)im->data)[i];
    return ((const float *)im->data)[i];
}

/* Per-channel glass level of an uncalibrated frame: its 99.5th pct. */
static void
glass_levels(const struct img *raw, double level[3])
{
    long hist[3][256] = { { 0 } }, want, acc;
    size_t i, npx = (size_t)raw->w * raw->h;
    const uint8_t *p = raw->data;
    int c, v;

    for (i = 0; i < npx; i++)
        for (c = 0; c < 3; c++)
            hist[c][p[i * 3 + c]]++;
    want = (long)(0.005 * (double)npx) + 1;
    for (c = 0; c < 3; c++) {
        acc = 0;
        for (v = 255; v > 0; v--) {
            acc += hist[c][v];
            if (acc >= want)
                break;
        }
        level[c] = v < 8 ? 8 : v;
    }
}

static double
percentile(const long *hist, long total, double q)
{
    long want = (long)(q * (double)total), acc = 0;
    int b;

    for (b = 0; b < TBINS; b++) {
        acc += hist[b];
        if (acc > want)
            break;
    }
    return (b + 0.5) * 2.0 / TBINS;
}

void
exposure_check(const struct img *raw, const struct img *dark,
               const struct img *flat, const struct exp_limits *l,
               struct exp_stats *out)
{
    long hist[TBINS];
    size_t i, npx = (size_t)raw->w * raw->h;
    const uint8_t *p = raw->data;
    double glass[3];
    int c;

    memset(out, 0, sizeof(*out));
    memset(hist, 0, sizeof(hist));
    if (flat == NULL)
        glass_levels(raw, glass);
    for (i = 0; i < npx; i++) {
        double tmin = INFINITY, tmax = -INFINITY;
        int clipped = 0, all_clipped = 1, glass_clips = 1;
        for (c = 0; c < 3; c++) {
            size_t k = i * 3 + c;
            double d = dark != NULL ? pixf(dark, k) : 0;
            double f = flat != NULL ? pixf(flat, k) : glass[c];
            double t = ff_transmittance(p[k], d, f);
            tmin = fmin(tmin, t);
            tmax = fmax(tmax, t);
            if (p[k] >= l->sat_level)
                clipped = 1;
            else
                all_clipped = 0;
            if (f < l->sat_level - 1)
                glass_clips = 0;
        }
        if (all_clipped && !glass_clips) {
            out->tissue_px++;
            out->sat_px++;
        } else if (tmin < l->tissue_t_max) {
            out->tissue_px++;
            out->sat_px += clipped;
        }
        int b = (int)(tmax * TBINS / 2.0);
        hist[b < 0 ? 0 : b >= TBINS ? TBINS - 1 : b]++;
    }
    out->tissue_frac = (double)out->tissue_px / (double)npx;
    out->sat_frac = out->tissue_px > 0 ?
        (double)out->sat_px / (double)out->tissue_px : 0;
    out->bright_t = percentile(hist, (long)npx, 0.99);
    if (out->tissue_frac >= 0.005 && out->sat_frac > l->sat_frac_max)
        out->flags |= EXP_SATURATED;
    if (out->bright_t < l->dark_t_min)
        out->flags |= EXP_DARK;
}
