/* SPDX-License-Identifier: MIT */
/*
 * Phase correlation of two overlap views (imaging/register.h).
 *
 * Steps: remove each view's mean, taper its border with a raised cosine
 * (so the implicit periodic extension has no edge to correlate), pad with
 * zeros by the largest plausible shift, FFT both, keep only the phase of
 * their cross-power spectrum, weight it by a Gaussian of σ_f = 1 / (2π σ)
 * so the correlation peak becomes a Gaussian of σ px, and transform back.
 * The peak's centre comes from a parabola through the logarithms of the
 * peak and its two neighbours on each axis, exact for a Gaussian.
 */
#include "imaging/register.h"

#include <errno.h>
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t fftw_mu = PTHREAD_MUTEX_INITIALIZER;

void
reg_fftw_lock(void)
{
    pthread_mutex_lock(&fftw_mu);
}

void
reg_fftw_unlock(void)
{
    pthread_mutex_unlock(&fftw_mu);
}

void
reg_params_default(struct reg_params *p)
{
    p->max_shift_px = 20;
    p->min_peak_ratio = 2.0;
    p->min_ncc = 0.5;
    p->min_std = 1.0;
    p->peak_sigma_px = 1.0;
}

/* The smallest n' >= n with no prime factor above 7: sizes FFTW does
 * fast. */
static int
nice_size(int n)
{
    for (;; n++) {
        int m = n;

        while (m % 2 == 0)
            m /= 2;
        while (m % 3 == 0)
            m /= 3;
        while (m % 5 == 0)
            m /= 5;
        while (m % 7 == 0)
            m /= 7;
        if (m == 1)
            return n;
    }
}

/* A pair of plans for one padded size, kept for the process's life: a
 * scan registers hundreds of pairs of the same two sizes. */
struct plans {
    int nw, nh;
    fftwf_plan fwd, inv;
};

#define PLAN_CACHE 32
static struct plans plan_cache[PLAN_CACHE];
static int plan_count;

/* The plans for one size: cached for the process's life (a scan asks for
 * a handful of sizes, hundreds of times each); once the cache is full,
 * made for this call only and *owned is set so the caller destroys them.
 * False when FFTW cannot plan. */
static bool
plans_for(int nw, int nh, float *real, fftwf_complex *spec,
          struct plans *out, bool *owned)
{
    bool ok = false;
    int i;

    *owned = false;
    reg_fftw_lock();
    for (i = 0; i < plan_count && !ok; i++)
        if (plan_cache[i].nw == nw && plan_cache[i].nh == nh) {
            *out = plan_cache[i];
            ok = true;
        }
    if (!ok) {
        out->nw = nw;
        out->nh = nh;
        out->fwd = fftwf_plan_dft_r2c_2d(nh, nw, real, spec, FFTW_ESTIMATE);
        out->inv = fftwf_plan_dft_c2r_2d(nh, nw, spec, real, FFTW_ESTIMATE);
        ok = out->fwd != NULL && out->inv != NULL;
        if (ok && plan_count < PLAN_CACHE)
            plan_cache[plan_count++] = *out;
        else
            *owned = true;
    }
    reg_fftw_unlock();
    return ok;
}

static void
plans_release(struct plans *pl, bool owned)
{
    if (!owned)
        return;
    reg_fftw_lock();
    if (pl->fwd != NULL)
        fftwf_destroy_plan(pl->fwd);
    if (pl->inv != NULL)
        fftwf_destroy_plan(pl->inv);
    reg_fftw_unlock();
}

static void
mean_std(const float *a, int n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    int i;

    for (i = 0; i < n; i++) {
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    *mean = s / n;
    *std = sqrt(fmax(0, s2 / n - *mean * *mean));
}

/* Raised-cosine taper over `edge` pixels at both ends of [0, n). */
static float
taper(int i, int n, int edge)
{
    int d = i < n - 1 - i ? i : n - 1 - i;

    if (d >= edge)
        return 1;
    return (float)(0.5 - 0.5 * cos(M_PI * (d + 0.5) / edge));
}

static void
load_view(const float *a, int w, int h, double mean, int nw, int nh,
          float *dst)
{
    int ex = w / 4 < 16 ? w / 4 : 16, ey = h / 4 < 16 ? h / 4 : 16, x, y;

    memset(dst, 0, sizeof(float) * (size_t)nw * nh);
    for (y = 0; y < h; y++) {
        float ty = taper(y, h, ey);

        for (x = 0; x < w; x++)
            dst[(size_t)y * nw + x] = (float)(a[(size_t)y * w + x] - mean) *
                                      taper(x, w, ex) * ty;
    }
}

/* conj(A) · B, phase only, weighted by the Gaussian that shapes the
 * peak; written over B.  The Gaussian is separable, so its two factors
 * are tabulated once per transform. */
static void
cross_power(const fftwf_complex *fa, fftwf_complex *fb, int nw, int nh,
            double sigma)
{
    int kw = nw / 2 + 1, kx, ky;
    double g = 2 * M_PI * M_PI * sigma * sigma;
    float *gx = malloc(sizeof(float) * (size_t)kw);

    for (kx = 0; gx != NULL && kx < kw; kx++)
        gx[kx] = (float)exp(-g * ((double)kx / nw) * ((double)kx / nw));
    for (ky = 0; ky < nh; ky++) {
        double fy = (ky <= nh / 2 ? ky : ky - nh) / (double)nh;
        float gy = (float)exp(-g * fy * fy);

        for (kx = 0; kx < kw; kx++) {
            size_t i = (size_t)ky * kw + kx;
            float re = fa[i][0] * fb[i][0] + fa[i][1] * fb[i][1];
            float im = fa[i][0] * fb[i][1] - fa[i][1] * fb[i][0];
            float mag = sqrtf(re * re + im * im);
            float wgt = mag > 1e-20f ? gy * (gx ? gx[kx] : 1) / mag : 0;

            fb[i][0] = re * wgt;
            fb[i][1] = im * wgt;
        }
    }
    free(gx);
}

static float
at(const float *c, int nw, int nh, int x, int y)
{
    x = ((x % nw) + nw) % nw;
    y = ((y % nh) + nh) % nh;
    return c[(size_t)y * nw + x];
}

/* Offset of a peak's centre from sample 0 given samples at -1, 0, +1. */
static double
fit3(double m, double c, double p)
{
    double d;

    if (m > 0 && c > 0 && p > 0) {
        m = log(m);
        c = log(c);
        p = log(p);
    }
    d = m - 2 * c + p;
    if (d >= 0)
        return 0;
    d = 0.5 * (m - p) / d;
    return d < -0.5 ? -0.5 : d > 0.5 ? 0.5 : d;
}

struct peak {
    int x, y;                       /* signed shift of the maximum */
    double value, second;
};

static void
find_peak(const float *c, int nw, int nh, double excl, struct peak *pk)
{
    int x, y;
    size_t best = 0, i;

    for (i = 1; i < (size_t)nw * nh; i++)
        if (c[i] > c[best])
            best = i;
    pk->x = (int)(best % nw);
    pk->y = (int)(best / nw);
    pk->x -= pk->x > nw / 2 ? nw : 0;
    pk->y -= pk->y > nh / 2 ? nh : 0;
    pk->value = c[best];
    pk->second = 0;
    for (y = 0; y < nh; y++) {
        int sy = y > nh / 2 ? y - nh : y;

        for (x = 0; x < nw; x++) {
            int sx = x > nw / 2 ? x - nw : x;
            double dx = sx - pk->x, dy = sy - pk->y;

            if (dx * dx + dy * dy > excl * excl &&
                c[(size_t)y * nw + x] > pk->second)
                pk->second = c[(size_t)y * nw + x];
        }
    }
}

/* The views smoothed twice with the binomial kernel [1 4 6 4 1] / 16 (a
 * Gaussian of σ 1.4 px) along both axes, edges repeated: the agreement test
 * runs on smoothed views because camera noise is white and independent
 * between the two frames while tissue is not, so on an overlap that is
 * mostly glass with a few cells the smoothing lifts the correlation of
 * the cells above that of the noise. */
static float
tap5(const float *p, ptrdiff_t step, int i, int n)
{
    int k[5], j;
    static const float g[5] = { 1 / 16.f, 4 / 16.f, 6 / 16.f, 4 / 16.f,
                                1 / 16.f };
    float v = 0;

    for (j = 0; j < 5; j++) {
        k[j] = i + j - 2;
        k[j] = k[j] < 0 ? 0 : k[j] >= n ? n - 1 : k[j];
        v += g[j] * p[k[j] * step];
    }
    return v;
}

static void
blur_line(const float *p, ptrdiff_t step, int n, float *out,
          ptrdiff_t ostep)
{
    int i;

    for (i = 0; i < n; i++) {
        if (i >= 2 && i < n - 2)
            out[i * ostep] = (p[(i - 2) * step] + p[(i + 2) * step] +
                              4 * (p[(i - 1) * step] + p[(i + 1) * step]) +
                              6 * p[i * step]) * (1 / 16.f);
        else
            out[i * ostep] = tap5(p, step, i, n);
    }
}

static float *
smooth(const float *a, int w, int h)
{
    float *t = malloc(sizeof(float) * (size_t)w * h);
    float *o = malloc(sizeof(float) * (size_t)w * h);
    int x, y;

    if (t == NULL || o == NULL) {
        free(t);
        free(o);
        return NULL;
    }
    for (y = 0; y < h; y++) {
        blur_line(a + (size_t)y * w, 1, w, t + (size_t)y * w, 1);
        blur_line(t + (size_t)y * w, 1, w, o + (size_t)y * w, 1);
    }
    for (x = 0; x < w; x++) {
        blur_line(o + x, w, h, t + x, w);
        blur_line(t + x, w, h, o + x, w);
    }
    free(t);
    return o;
}

/* Normalised cross-correlation of b(x, y) and a(x + dx, y + dy) where
 * both exist. */
static double
aligned_ncc(const float *a, const float *b, int w, int h, int dx, int dy)
{
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n = 0, va, vb;
    int x, y;

    for (y = 0; y < h; y++) {
        if (y + dy < 0 || y + dy >= h)
            continue;
        for (x = 0; x < w; x++) {
            double pa, pb;

            if (x + dx < 0 || x + dx >= w)
                continue;
            pa = a[(size_t)(y + dy) * w + x + dx];
            pb = b[(size_t)y * w + x];
            sa += pa;
            sb += pb;
            saa += pa * pa;
            sbb += pb * pb;
            sab += pa * pb;
            n++;
        }
    }
    if (n < 16)
        return 0;
    va = saa - sa * sa / n;
    vb = sbb - sb * sb / n;
    if (va <= 0 || vb <= 0)
        return 0;
    return (sab - sa * sb / n) / sqrt(va * vb);
}

static bool
refuse(struct reg_result *r, const char *why)
{
    r->ok = false;
    r->why = why;
    return false;
}

/* Judges the correlation surface; fills r. */
static void
judge(const float *a, const float *b, int w, int h, const float *c, int nw,
      int nh, const struct reg_params *p, struct reg_result *r)
{
    struct peak pk;
    double sx, sy;
    float *sa, *sb;

    find_peak(c, nw, nh, 3 * p->peak_sigma_px + 2, &pk);
    r->peak_ratio = pk.second > 0 ? pk.value / pk.second : 1e9;
    sx = pk.x + fit3(at(c, nw, nh, pk.x - 1, pk.y), pk.value,
                     at(c, nw, nh, pk.x + 1, pk.y));
    sy = pk.y + fit3(at(c, nw, nh, pk.x, pk.y - 1), pk.value,
                     at(c, nw, nh, pk.x, pk.y + 1));
    /* The peak at s means b(x) = a(x - s). */
    r->dx = -sx;
    r->dy = -sy;
    if (p->min_ncc > -1) {
        sa = smooth(a, w, h);
        sb = smooth(b, w, h);
        r->ncc = sa && sb ? aligned_ncc(sa, sb, w, h, -pk.x, -pk.y) : 0;
        free(sa);
        free(sb);
    } else {
        r->ncc = 1;                 /* refining: agreement already shown */
    }
    if (pk.value <= 0 || r->peak_ratio < p->min_peak_ratio)
        refuse(r, "weak correlation peak");
    else if (r->ncc < p->min_ncc)
        refuse(r, "views disagree once aligned");
    else if (hypot(r->dx, r->dy) > p->max_shift_px)
        refuse(r, "shift larger than the stage's plausible error");
    else
        r->ok = true;
}

/* One correlation of a and b, judged into r. */
static int
correlate(const float *a, const float *b, int w, int h,
          const struct reg_params *p, struct reg_result *r,
          struct ss_err *err)
{
    int pad = (int)ceil(p->max_shift_px) + 2;
    int nw = nice_size(w + pad), nh = nice_size(h + pad);
    size_t nspec = (size_t)nh * (nw / 2 + 1);
    double ma, sa, mb, sb;
    struct plans pl;
    bool owned = false, ok;
    float *ra, *rb;
    fftwf_complex *fa, *fb;

    mean_std(a, w * h, &ma, &sa);
    mean_std(b, w * h, &mb, &sb);
    ra = fftwf_malloc(sizeof(float) * (size_t)nw * nh);
    rb = fftwf_malloc(sizeof(float) * (size_t)nw * nh);
    fa = fftwf_malloc(sizeof(fftwf_complex) * nspec);
    fb = fftwf_malloc(sizeof(fftwf_complex) * nspec);
    ok = ra && rb && fa && fb && plans_for(nw, nh, ra, fa, &pl, &owned);
    if (ok) {
        load_view(a, w, h, ma, nw, nh, ra);
        load_view(b, w, h, mb, nw, nh, rb);
        fftwf_execute_dft_r2c(pl.fwd, ra, fa);
        fftwf_execute_dft_r2c(pl.fwd, rb, fb);
        cross_power(fa, fb, nw, nh, p->peak_sigma_px);
        fftwf_execute_dft_c2r(pl.inv, fb, ra);
        judge(a, b, w, h, ra, nw, nh, p, r);
        plans_release(&pl, owned);
    }
    fftwf_free(ra);
    fftwf_free(rb);
    fftwf_free(fa);
    fftwf_free(fb);
    if (!ok)
        return err_set(err, -ENOMEM, "registration: cannot set up a %dx%d "
                       "transform", nw, nh);
    return 0;
}

/* The taper that keeps the implicit periodic edges out of the
 * correlation also pulls the peak towards zero shift, by a few tenths of
 * a pixel when the shift is a sizeable part of a narrow overlap.  So the
 * common part of the views at the whole-pixel shift is correlated again:
 * what is left is under a pixel and barely biased. */
static int
refine(const float *a, const float *b, int w, int h,
       const struct reg_params *p, struct reg_result *r, struct ss_err *err)
{
    int dx = (int)lround(r->dx), dy = (int)lround(r->dy), x, y, rc;
    int w2 = w - abs(dx), h2 = h - abs(dy);
    int bx = dx < 0 ? -dx : 0, by = dy < 0 ? -dy : 0;
    struct reg_params p2 = *p;
    struct reg_result r2;
    float *a2, *b2;

    if ((dx == 0 && dy == 0) || w2 < 8 || h2 < 8)
        return 0;
    a2 = malloc(sizeof(float) * (size_t)w2 * h2);
    b2 = malloc(sizeof(float) * (size_t)w2 * h2);
    if (a2 == NULL || b2 == NULL) {
        free(a2);
        free(b2);
        return err_set(err, -ENOMEM, "registration: out of memory");
    }
    for (y = 0; y < h2; y++)
        for (x = 0; x < w2; x++) {
            b2[(size_t)y * w2 + x] = b[(size_t)(y + by) * w + x + bx];
            a2[(size_t)y * w2 + x] = a[(size_t)(y + by + dy) * w + x + bx +
                                       dx];
        }
    p2.max_shift_px = 2;
    p2.min_ncc = -1;
    p2.min_peak_ratio = 1;
    rc = correlate(a2, b2, w2, h2, &p2, &r2, err);
    if (rc == 0 && r2.ok && fabs(r2.dx) <= 1.5 && fabs(r2.dy) <= 1.5) {
        r->dx = dx + r2.dx;
        r->dy = dy + r2.dy;
    }
    free(a2);
    free(b2);
    return rc;
}

int
reg_phase_correlate(const float *a, const float *b, int w, int h,
                    const struct reg_params *p, struct reg_result *r,
                    struct ss_err *err)
{
    double ma, sa, mb, sb;
    int rc;

    memset(r, 0, sizeof(*r));
    if (w < 8 || h < 8) {
        refuse(r, "overlap too small");
        return 0;
    }
    mean_std(a, w * h, &ma, &sa);
    mean_std(b, w * h, &mb, &sb);
    if (sa < p->min_std || sb < p->min_std) {
        refuse(r, "featureless overlap");
        return 0;
    }
    rc = correlate(a, b, w, h, p, r, err);
    if (rc == 0 && r->ok)
        rc = refine(a, b, w, h, p, r, err);
    return rc;
}
