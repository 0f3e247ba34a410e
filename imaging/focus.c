/* SPDX-License-Identifier: MIT */
/* The sharpness metric and the coarse-to-fine autofocus search. */
#include "imaging/focus.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define AF_MAX_PROBES 64

void
af_params_default(struct af_params *p)
{
    p->z_min_um = -INFINITY;
    p->z_max_um = INFINITY;
    p->range_um = 20.0;
    p->coarse_n = 5;
    p->fine_step_um = 2.0;
    p->fine_n = 3;
    p->max_captures = 8;
    p->min_contrast = 1.15;
}

static double
lum_at(const struct img *im, int x, int y)
{
    size_t i = ((size_t)y * im->w + x) * im->c;

    if (im->type == IMG_U8) {
        const uint8_t *p = (const uint8_t *)im->data + i;
        return im->c >= 3 ? (p[0] + 2.0 * p[1] + p[2]) * 0.25 : p[0];
    }
    const float *f = (const float *)im->data + i;
    return im->c >= 3 ? (f[0] + 2.0 * f[1] + f[2]) * 0.25 : f[0];
}

/* Luminance averaged over bin × bin blocks, into a new w × h buffer. */
static float *
binned_lum(const struct img *im, int bin, int *w, int *h)
{
    float *l;
    int x, y, bx, by;

    *w = im->w / bin;
    *h = im->h / bin;
    if (*w < 3 || *h < 3)
        return NULL;
    l = calloc((size_t)*w * *h, sizeof(*l));
    if (l == NULL)
        return NULL;
    for (y = 0; y < *h * bin; y++)
        for (x = 0; x < *w * bin; x++)
            l[(size_t)(y / bin) * *w + x / bin] += (float)lum_at(im, x, y);
    for (by = 0; by < *h; by++)
        for (bx = 0; bx < *w; bx++)
            l[(size_t)by * *w + bx] /= (float)(bin * bin);
    return l;
}

double
focus_sharpness(const struct img *im, int bin)
{
    double sum = 0, mean = 0, s;
    float *l;
    int w, h, x, y;
    long n = 0;

    l = binned_lum(im, bin < 1 ? 1 : bin, &w, &h);
    if (l == NULL)
        return 0;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            mean += l[(size_t)y * w + x];
    mean /= (double)w * h;
    for (y = 0; y + 2 < h; y++) {
        const float *r = l + (size_t)y * w, *r2 = r + 2 * (size_t)w;
        for (x = 0; x + 2 < w; x++) {
            double dx = r[x + 2] - r[x], dy = r2[x] - r[x];
            sum += dx * dx + dy * dy;
            n++;
        }
    }
    free(l);
    if (n == 0 || mean <= 0)
        return 0;
    s = sum / (double)n / (mean * mean);
    return s;
}

bool
focus_fit3(const double z[3], const double metric[3], double *z_peak)
{
    double y0, y1, y2, den, a, b;

    if (metric[0] <= 0 || metric[1] <= 0 || metric[2] <= 0)
        return false;
    y0 = log(metric[0]);
    y1 = log(metric[1]);
    y2 = log(metric[2]);
    den = (z[0] - z[1]) * (z[0] - z[2]) * (z[1] - z[2]);
    if (den == 0)
        return false;
    a = (z[2] * (y1 - y0) + z[1] * (y0 - y2) + z[0] * (y2 - y1)) / den;
    b = (z[2] * z[2] * (y0 - y1) + z[1] * z[1] * (y2 - y0) +
         z[0] * z[0] * (y1 - y2)) / den;
    if (!(a < 0))
        return false;
    *z_peak = -b / (2 * a);
    return isfinite(*z_peak);
}

/* Index of the largest metric, and max/min of all n. */
static int
argmax(const double *m, int n, double *contrast)
{
    double lo = INFINITY, hi = -INFINITY;
    int i, best = 0;

    for (i = 0; i < n; i++) {
        if (m[i] > hi) {
            hi = m[i];
            best = i;
        }
        lo = fmin(lo, m[i]);
    }
    *contrast = lo > 0 ? hi / lo : (hi > 0 ? INFINITY : 1.0);
    return best;
}

/* Refines the peak at index i of a sweep by the three-point fit through
 * it and its neighbours, keeping the result between them.  At an end the
 * three end samples are used and the vertex may lie up to half a spacing
 * beyond the end sample; otherwise the sample itself is the answer. */
static double
refine(const double *z, const double *m, int n, int i)
{
    int k = i <= 0 ? 0 : i >= n - 1 ? n - 3 : i - 1;
    double zp, lo, hi;

    if (n < 3 || !focus_fit3(z + k, m + k, &zp))
        return z[i];
    lo = i == 0 ? z[0] - 0.5 * (z[1] - z[0]) : z[i - 1];
    hi = i == n - 1 ? z[n - 1] + 0.5 * (z[n - 1] - z[n - 2]) : z[i + 1];
    if (i == 0 || i == n - 1)
        return zp >= lo && zp <= hi ? zp : z[i];
    return fmin(fmax(zp, lo), hi);
}

int
focus_sweep_peak(const double *z_um, const double *metric, int n,
                 double min_contrast, double *z_peak, struct ss_err *err)
{
    double contrast;
    int i;

    if (n < 1)
        return err_set(err, -EINVAL, "focus sweep: no frames");
    i = argmax(metric, n, &contrast);
    if (n < 3 || contrast < min_contrast)
        return err_set(err, SS_ENOFOCUS, "focus sweep: no focus in %d "
                       "frames from z=%.2f to %.2f um (max/min sharpness "
                       "%.3f < %.3f)", n, z_um[0], z_um[n - 1], contrast,
                       min_contrast);
    *z_peak = refine(z_um, metric, n, i);
    return 0;
}

struct af_run {
    const struct af_params *p;
    focus_probe_fn probe;
    void *ctx;
    struct af_result *r;
};

static double
clampz(const struct af_params *p, double z)
{
    return fmin(fmax(z, p->z_min_um), p->z_max_um);
}

static int
probe_at(struct af_run *run, double z, double spacing, double *m,
         struct ss_err *err)
{
    int rc = run->probe(run->ctx, z, spacing, m, err);

    run->r->captures++;
    if (rc != 0)
        err_prefix(err, "autofocus at z=%.2f um", z);
    return rc;
}

/* The coarse sweep: returns the estimated peak in *zc, or SS_ENOFOCUS. */
static int
coarse_sweep(struct af_run *run, double start, double *zc,
             struct ss_err *err)
{
    const struct af_params *p = run->p;
    double z[AF_MAX_PROBES], m[AF_MAX_PROBES];
    int n = p->coarse_n < 3 ? 3 : p->coarse_n, k, best, rc;
    double reach, lo, hi;

    if (n > AF_MAX_PROBES / 2)
        n = AF_MAX_PROBES / 2;
    reach = n > 3 ? p->range_um * (n - 1) / (n - 2) : p->range_um;
    lo = clampz(p, start - reach);
    hi = clampz(p, start + reach);
    for (k = 0; k < n; k++) {
        z[k] = lo + (hi - lo) * k / (n - 1);
        rc = probe_at(run, z[k], (hi - lo) / (n - 1), &m[k], err);
        if (rc != 0)
            return rc;
    }
    best = argmax(m, n, &run->r->contrast);
    if (run->r->contrast < p->min_contrast)
        return err_set(err, SS_ENOFOCUS, "autofocus: no focus between "
                       "z=%.2f and %.2f um (max/min sharpness %.3f < "
                       "%.3f)", lo, hi, run->r->contrast, p->min_contrast);
    *zc = refine(z, m, n, best);
    return 0;
}

/* Inserts (zv, mv) into the ascending arrays of n entries. */
static int
insert_sorted(double *z, double *m, int n, double zv, double mv)
{
    int i = n;

    while (i > 0 && z[i - 1] > zv) {
        z[i] = z[i - 1];
        m[i] = m[i - 1];
        i--;
    }
    z[i] = zv;
    m[i] = mv;
    return i;
}

/* The fine probes around zc, plus one more past an edge maximum. */
static int
fine_steps(struct af_run *run, double zc, struct ss_err *err)
{
    const struct af_params *p = run->p;
    double z[AF_MAX_PROBES], m[AF_MAX_PROBES], c, zn, mn;
    int n = 0, k, best, fn = p->fine_n < 3 ? 3 : p->fine_n, rc;

    if (fn > AF_MAX_PROBES / 2)
        fn = AF_MAX_PROBES / 2;
    for (k = 0; k < fn; k++) {
        zn = clampz(p, zc + (k - (fn - 1) / 2.0) * p->fine_step_um);
        if (n > 0 && zn <= z[n - 1])
            continue;
        rc = probe_at(run, zn, p->fine_step_um, &mn, err);
        if (rc != 0)
            return rc;
        insert_sorted(z, m, n++, zn, mn);
    }
    best = argmax(m, n, &c);
    while ((best == 0 || best == n - 1) && n < AF_MAX_PROBES &&
           run->r->captures < p->max_captures) {
        zn = clampz(p, z[best] + (best == 0 ? -1 : 1) * p->fine_step_um);
        if (zn == z[best])
            break;
        rc = probe_at(run, zn, p->fine_step_um, &mn, err);
        if (rc != 0)
            return rc;
        insert_sorted(z, m, n++, zn, mn);
        best = argmax(m, n, &c);
    }
    run->r->z_um = refine(z, m, n, best);
    run->r->metric = m[best];
    return 0;
}

int
focus_search(const struct af_params *p, double z_start_um,
             focus_probe_fn probe, void *ctx, struct af_result *r,
             struct ss_err *err)
{
    struct af_run run = { p, probe, ctx, r };
    double zc;
    int rc;

    r->z_um = clampz(p, z_start_um);
    r->metric = 0;
    r->contrast = 1;
    r->captures = 0;
    r->found = false;
    rc = coarse_sweep(&run, r->z_um, &zc, err);
    if (rc != 0)
        return rc;
    rc = fine_steps(&run, zc, err);
    if (rc != 0)
        return rc;
    r->found = true;
    return 0;
}
