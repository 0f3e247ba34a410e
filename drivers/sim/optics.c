/* SPDX-License-Identifier: MIT */
/*
 * Pixel operations of the simulator on interleaved RGB float buffers:
 * Gaussian blur (a short exact kernel below σ = 2 px, above it the
 * recursive filter of Young and van Vliet, whose cost does not grow with
 * σ), the sparse motion smear of a stage that moves during the exposure,
 * and separable resampling with a Catmull-Rom kernel.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- scratch buffers --------------------------------------------------- */

/*
 * Frames need a few buffers of tens of MB each.  Allocating them per
 * frame costs page faults every time (large blocks come straight from
 * mmap), so released buffers are kept for the next frame, a few at most,
 * and all freed when the last simulator ends.
 */
#define POOL_N 8

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t n;
} pool[POOL_N];
static int pool_users;

void *
sim__scratch(size_t bytes)
{
    void *p = NULL;
    int i, best = -1;

    pthread_mutex_lock(&pool_mu);
    for (i = 0; i < POOL_N; i++)
        if (pool[i].p != NULL && pool[i].n >= bytes &&
            (best < 0 || pool[i].n < pool[best].n))
            best = i;
    if (best >= 0) {
        p = pool[best].p;
        pool[best].p = NULL;
    }
    pthread_mutex_unlock(&pool_mu);
    if (p == NULL) {
        p = malloc(bytes + sizeof(size_t) * 2);
        if (p == NULL)
            return NULL;
        *(size_t *)p = bytes;
    }
    return (char *)p + sizeof(size_t) * 2;
}

void
sim__scratch_free(void *q)
{
    char *p;
    size_t n;
    int i, small = -1;

    if (q == NULL)
        return;
    p = (char *)q - sizeof(size_t) * 2;
    n = *(size_t *)(void *)p;
    pthread_mutex_lock(&pool_mu);
    for (i = 0; i < POOL_N && p != NULL; i++) {
        if (pool[i].p == NULL) {
            pool[i].p = p;
            pool[i].n = n;
            p = NULL;
        } else if (small < 0 || pool[i].n < pool[small].n) {
            small = i;
        }
    }
    if (p != NULL && pool_users > 0 && pool[small].n < n) {
        void *old = pool[small].p;

        pool[small].p = p;
        pool[small].n = n;
        p = old;
    }
    pthread_mutex_unlock(&pool_mu);
    free(p);
}

void
sim__scratch_users(int delta)
{
    int i;

    pthread_mutex_lock(&pool_mu);
    pool_users += delta;
    if (pool_users == 0) {
        for (i = 0; i < POOL_N; i++) {
            free(pool[i].p);
            pool[i].p = NULL;
        }
    }
    pthread_mutex_unlock(&pool_mu);
}

/* ---- separable filtering ---------------------------------------------- */

/*
 * A separable filter applied in place in one streaming pass: each input
 * row is filtered along x into a ring of rows, and each output row is the
 * weighted sum of ring rows along y, so every pixel is read and written
 * once.  Taps are (offset in pixels, weight).  Along x the first and last
 * few pixels (within the largest offset) are copied unfiltered; callers
 * render a border wider than that and cut it away.
 */
/* Whether taps are offsets -r..r with w[-k] == w[k] (then mixed with
 * mix_sym: centre weight, then the pairs). */
static bool
symmetric(const struct sim__kernel *k)
{
    int i, r = k->n / 2;

    if (k->n % 2 == 0)
        return false;
    for (i = 0; i < k->n; i++)
        if (k->off[i] != i - r || k->w[i] != k->w[k->n - 1 - i])
            return false;
    return true;
}

void
sim__mix_kernel(float *d, const float *const *rows,
                const struct sim__kernel *k, size_t n, bool wide)
{
    const float *lo[80], *hi[80];
    int r = k->n / 2, j;

    if (!symmetric(k) || r >= 80) {
        sim__mix_rows(d, rows, k->w, k->n, n, wide);
        return;
    }
    for (j = 1; j <= r; j++) {
        lo[j] = rows[r - j];
        hi[j] = rows[r + j];
    }
    sim__mix_sym(d, rows[r], lo, hi, k->w + r, r + 1, n, wide);
}

bool
sim__kernel_blocked(const struct sim__kernel *k)
{
    /* Offsets one apart (no gap) and not symmetric: the blocked loop
     * sums like sim__mix_rows(). */
    return !symmetric(k) && k->n >= 4 &&
           k->off[k->n - 1] - k->off[0] == k->n - 1;
}

void
sim__mix_kernel4(float *const *d, const float *const *rows,
                 const struct sim__kernel *k, size_t n, bool wide)
{
    const float *in[160];
    int t, q;

    if (sim__kernel_blocked(k)) {
        sim__mix_rows4(d, rows, k->w, k->n, n, wide);
        return;
    }
    for (q = 0; q < 4; q++) {
        for (t = 0; t < k->n; t++)
            in[t] = rows[q + k->off[t] - k->off[0]];
        sim__mix_kernel(d[q], in, k, n, wide);
    }
}

void
sim__row_filter(const float *in, float *out, size_t row,
                const struct sim__kernel *k, bool wide)
{
    const float *rows[160];
    size_t lo = 0, hi = row;
    int t;

    for (t = 0; t < k->n; t++) {
        if (k->off[t] < 0 && (size_t)(-k->off[t]) * 3 > lo)
            lo = (size_t)(-k->off[t]) * 3;
        if (k->off[t] > 0 && row - (size_t)k->off[t] * 3 < hi)
            hi = row - (size_t)k->off[t] * 3;
    }
    if (lo >= hi) {
        memcpy(out, in, row * sizeof(float));
        return;
    }
    memcpy(out, in, lo * sizeof(float));
    memcpy(out + hi, in + hi, (row - hi) * sizeof(float));
    for (t = 0; t < k->n; t++)
        rows[t] = in + lo + (ptrdiff_t)k->off[t] * 3;
    sim__mix_kernel(out + lo, rows, k, hi - lo, wide);
}

static int
sep_filter(float *buf, int w, int h, const struct sim__kernel *kx,
           const struct sim__kernel *ky, bool wide)
{
    size_t row = (size_t)w * 3;
    int lo = 0, hi = 0, rs, t, y, next = 0;
    const float *rows[160];
    float *ring;

    for (t = 0; t < ky->n; t++) {
        lo = ky->off[t] < lo ? ky->off[t] : lo;
        hi = ky->off[t] > hi ? ky->off[t] : hi;
    }
    rs = hi - lo + 1;
    ring = sim__scratch((size_t)rs * row * sizeof(float));
    if (ring == NULL)
        return -ENOMEM;
    for (y = 0; y < h; y++) {
        for (; next < h && next <= y + hi; next++)
            sim__row_filter(buf + (size_t)next * row,
                            ring + (size_t)(next % rs) * row, row, kx,
                            wide);
        for (t = 0; t < ky->n; t++) {
            int yy = y + ky->off[t];

            yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
            rows[t] = ring + (size_t)(yy % rs) * row;
        }
        sim__mix_kernel(buf + (size_t)y * row, rows, ky, row, wide);
    }
    sim__scratch_free(ring);
    return 0;
}

static void
gauss_kernel(struct sim__kernel *k, double sigma)
{
    int r = (int)ceil(3 * sigma), i;
    double sum = 0;

    if (sigma < 0.15) {
        k->n = 1;
        k->off[0] = 0;
        k->w[0] = 1;
        return;
    }
    k->n = 2 * r + 1;
    for (i = -r; i <= r; i++) {
        k->off[i + r] = i;
        k->w[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
        sum += k->w[i + r];
    }
    for (i = 0; i < k->n; i++)
        k->w[i] = (float)(k->w[i] / sum);
}

/* The convolution of the motion taps with a kernel; false (k unchanged)
 * when the result would be longer than a kernel holds. */
static bool
convolve_taps(struct sim__kernel *k, const int *off, const float *wt, int n)
{
    struct sim__kernel g = *k;
    float acc[160];
    int lo = 1 << 30, hi = -(1 << 30), i, j, o;

    if (n == 0)
        return true;
    for (i = 0; i < n; i++)
        for (j = 0; j < g.n; j++) {
            o = off[i] + g.off[j];
            lo = o < lo ? o : lo;
            hi = o > hi ? o : hi;
        }
    if (hi - lo + 1 > 160)
        return false;
    memset(acc, 0, sizeof(acc));
    for (i = 0; i < n; i++)
        for (j = 0; j < g.n; j++)
            acc[off[i] + g.off[j] - lo] += wt[i] * g.w[j];
    k->n = 0;
    for (o = lo; o <= hi; o++) {
        if (acc[o - lo] == 0)
            continue;
        k->off[k->n] = o;
        k->w[k->n++] = acc[o - lo];
    }
    return true;
}

static void
taps_kernel(struct sim__kernel *k, const int *off, const float *wt, int n)
{
    int i;

    k->n = n > 0 ? n : 1;
    k->off[0] = 0;
    k->w[0] = 1;
    for (i = 0; i < n; i++) {
        k->off[i] = off[i];
        k->w[i] = wt[i];
    }
}

struct yvv {
    float B, a1, a2, a3;            /* y = B x + a1 y1 + a2 y2 + a3 y3 */
};

static struct yvv
yvv_coef(double sigma)
{
    double q, b0, b1, b2, b3;
    struct yvv c;

    if (sigma >= 2.5)
        q = 0.98711 * sigma - 0.96330;
    else
        q = 3.97156 - 4.14554 * sqrt(1 - 0.26891 * sigma);
    b0 = 1.57825 + 2.44413 * q + 1.4281 * q * q + 0.422205 * q * q * q;
    b1 = 2.44413 * q + 2.85619 * q * q + 1.26661 * q * q * q;
    b2 = -(1.4281 * q * q + 1.26661 * q * q * q);
    b3 = 0.422205 * q * q * q;
    c.a1 = (float)(b1 / b0);
    c.a2 = (float)(b2 / b0);
    c.a3 = (float)(b3 / b0);
    c.B = (float)(1 - (b1 + b2 + b3) / b0);
    return c;
}

/* Forward and backward passes along each row, the three channels as
 * three interleaved recursions. */
static void
iir_rows(float *buf, int w, int h, struct yvv k)
{
    int x, y, c;

    for (y = 0; y < h; y++) {
        float *p = buf + (size_t)y * w * 3, y1[3], y2[3], y3[3], v;

        for (c = 0; c < 3; c++)
            y1[c] = y2[c] = y3[c] = p[c];
        for (x = 0; x < w; x++) {
            for (c = 0; c < 3; c++) {
                v = k.B * p[x * 3 + c] + k.a1 * y1[c] + k.a2 * y2[c] +
                    k.a3 * y3[c];
                p[x * 3 + c] = v;
                y3[c] = y2[c];
                y2[c] = y1[c];
                y1[c] = v;
            }
        }
        for (c = 0; c < 3; c++)
            y1[c] = y2[c] = y3[c] = p[(w - 1) * 3 + c];
        for (x = w - 1; x >= 0; x--) {
            for (c = 0; c < 3; c++) {
                v = k.B * p[x * 3 + c] + k.a1 * y1[c] + k.a2 * y2[c] +
                    k.a3 * y3[c];
                p[x * 3 + c] = v;
                y3[c] = y2[c];
                y2[c] = y1[c];
                y1[c] = v;
            }
        }
    }
}

static void
iir_step(float *p, const float *p1, const float *p2, const float *p3,
         struct yvv k, size_t n)
{
    sim_v4 B = sim__splat(k.B), a1 = sim__splat(k.a1);
    sim_v4 a2 = sim__splat(k.a2), a3 = sim__splat(k.a3);
    size_t x = 0;

    for (; x + 4 <= n; x += 4)
        sim__st(p + x, B * sim__ld(p + x) + a1 * sim__ld(p1 + x) +
                           a2 * sim__ld(p2 + x) + a3 * sim__ld(p3 + x));
    for (; x < n; x++)
        p[x] = k.B * p[x] + k.a1 * p1[x] + k.a2 * p2[x] + k.a3 * p3[x];
}

/* Down the columns, a whole row at a time. */
static void
iir_cols(float *buf, int w, int h, struct yvv k)
{
    size_t row = (size_t)w * 3;
    int y;

    for (y = 0; y < h; y++) {
        float *p = buf + (size_t)y * row;
        const float *p1 = buf + (size_t)(y >= 1 ? y - 1 : 0) * row;
        const float *p2 = buf + (size_t)(y >= 2 ? y - 2 : 0) * row;
        const float *p3 = buf + (size_t)(y >= 3 ? y - 3 : 0) * row;

        if (y == 0)
            continue;
        iir_step(p, p1, p2, p3, k, row);
    }
    for (y = h - 2; y >= 0; y--) {
        float *p = buf + (size_t)y * row;
        const float *p1 = buf + (size_t)(y + 1) * row;
        const float *p2 = buf + (size_t)(y + 2 < h ? y + 2 : h - 1) * row;
        const float *p3 = buf + (size_t)(y + 3 < h ? y + 3 : h - 1) * row;

        iir_step(p, p1, p2, p3, k, row);
    }
}

bool
sim__optics_kernels(const struct sim__shot *sh, struct sim__kernel *kx,
                    struct sim__kernel *ky)
{
    bool fir = sh->blur_px < 4.0;

    gauss_kernel(kx, fir ? sh->blur_px : 0);
    *ky = *kx;
    if (!convolve_taps(kx, sh->tap_off[0], sh->tap_w[0], sh->ntaps[0]) ||
        !convolve_taps(ky, sh->tap_off[1], sh->tap_w[1], sh->ntaps[1]))
        return false;
    return fir;
}

void
sim__optics(float *buf, int w, int h, const struct sim__shot *sh)
{
    struct sim__kernel kx, ky;
    double sigma = sh->blur_px;
    bool fir = sigma < 4.0;

    gauss_kernel(&kx, fir ? sigma : 0);
    ky = kx;
    if (!convolve_taps(&kx, sh->tap_off[0], sh->tap_w[0], sh->ntaps[0]) ||
        !convolve_taps(&ky, sh->tap_off[1], sh->tap_w[1], sh->ntaps[1])) {
        /* A long smear (captured while moving): taps first, then blur. */
        struct sim__kernel mx, my;

        taps_kernel(&mx, sh->tap_off[0], sh->tap_w[0], sh->ntaps[0]);
        taps_kernel(&my, sh->tap_off[1], sh->tap_w[1], sh->ntaps[1]);
        sep_filter(buf, w, h, &mx, &my, sh->wide);
    }
    if ((kx.n > 1 || ky.n > 1) &&
        sep_filter(buf, w, h, &kx, &ky, sh->wide) < 0)
        sigma = 0;
    if (!fir) {
        struct yvv k = yvv_coef(sigma);

        iir_rows(buf, w, h, k);
        iir_cols(buf, w, h, k);
    }
}

/* ---- resampling ------------------------------------------------------- */

static double
catmull_rom(double t)
{
    t = fabs(t);
    if (t < 1)
        return 1.5 * t * t * t - 2.5 * t * t + 1;
    if (t < 2)
        return -0.5 * t * t * t + 2.5 * t * t - 4 * t + 2;
    return 0;
}

/* Taps for n outputs at source coordinates c0 + i * f, clamped to
 * [0, limit). */
int
sim__taps_make(struct sim__taps *t, int n, double c0, double f, int limit)
{
    double s = f > 1.01 ? f : 1.0, rad = 2 * s;
    int i, j;

    t->n = n;
    t->wx = NULL;
    t->idx = NULL;
    t->k = s == 1.0 ? 4 : (int)ceil(2 * rad) + 1;
    t->first = malloc((size_t)n * sizeof(int));
    t->w = malloc((size_t)n * t->k * sizeof(float));
    if (t->first == NULL || t->w == NULL)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        double c = c0 + i * f, sum = 0;
        int first = (int)floor(c - rad) + 1;
        float *w = t->w + (size_t)i * t->k;

        if (first < 0)
            first = 0;
        if (first > limit - t->k)
            first = limit - t->k;
        t->first[i] = first;
        for (j = 0; j < t->k; j++) {
            w[j] = (float)catmull_rom((first + j - c) / s);
            sum += w[j];
        }
        for (j = 0; j < t->k; j++)
            w[j] = (float)(w[j] / sum);
    }
    return 0;
}

void
sim__taps_free(struct sim__taps *t)
{
    free(t->first);
    free(t->w);
    free(t->wx);
    free(t->idx);
}

int
sim__taps_expand(struct sim__taps *t)
{
    size_t n3 = (size_t)t->n * 3, x;
    int j, c;

    if ((size_t)t->k * n3 > ((size_t)16 << 20))
        return 0;
    t->wx = malloc((size_t)t->k * n3 * sizeof(float));
    if (t->wx == NULL)
        return -ENOMEM;
    for (j = 0; j < t->k; j++)
        for (x = 0; x < (size_t)t->n; x++)
            for (c = 0; c < 3; c++)
                t->wx[j * n3 + x * 3 + c] = t->w[x * t->k + j];
    if (t->k == 4)
        return 0;
    t->idx = malloc(n3 * sizeof(*t->idx));
    if (t->idx == NULL)
        return -ENOMEM;
    for (x = 0; x < (size_t)t->n; x++)
        for (c = 0; c < 3; c++)
            t->idx[x * 3 + c] = t->first[x] * 3 + c;
    return 0;
}

/* Outputs x0.. whose first taps advance one sample per output read one
 * stretch of the row: the weight-per-sample mix does them at once. */
static void
resample_var(const struct sim__taps *tx, const float *s, float *m,
             bool wide)
{
    size_t n3 = (size_t)tx->n * 3;
    const float *rows[4], *w[4];
    int x0, x1, j;

    for (x0 = 0; x0 < tx->n; x0 = x1) {
        for (x1 = x0 + 1; x1 < tx->n && tx->first[x1] == tx->first[x1 - 1] +
                                                          1; x1++)
            ;
        for (j = 0; j < 4; j++) {
            rows[j] = s + (size_t)(tx->first[x0] + j) * 3;
            w[j] = tx->wx + j * n3 + (size_t)x0 * 3;
        }
        sim__mix_var(m + (size_t)x0 * 3, rows, w, 4, (size_t)(x1 - x0) * 3,
                     wide);
    }
}

/* One row through the horizontal taps.  With a unit step every output
 * has the same weights at consecutive positions: a plain 4-tap filter. */
void
sim__resample_row(const struct sim__taps *tx, const float *s, float *m,
                  bool unit, bool wide)
{
    size_t n = (size_t)tx->n * 3;
    int x, j, c;

    if (unit && tx->k == 4 && tx->first[tx->n - 1] == tx->first[0] +
                                                     tx->n - 1) {
        const float *p = s + (size_t)tx->first[0] * 3;
        const float *rows[4] = { p, p + 3, p + 6, p + 9 };

        sim__mix_rows(m, rows, tx->w, 4, n, wide);
        return;
    }
    if (tx->k == 4 && tx->wx != NULL) {
        resample_var(tx, s, m, wide);
        return;
    }
    if (tx->k == 4) {
        for (x = 0; x < tx->n; x++) {
            const float *w = tx->w + (size_t)x * 4;
            const float *p = s + (size_t)tx->first[x] * 3;

            for (c = 0; c < 3; c++)
                m[x * 3 + c] = w[0] * p[c] + w[1] * p[3 + c] +
                               w[2] * p[6 + c] + w[3] * p[9 + c];
        }
        return;
    }
    if (tx->idx != NULL) {
        sim__mix_gather(m, s, tx->idx, tx->wx, tx->k, n, wide);
        return;
    }
    for (x = 0; x < tx->n; x++) {
        const float *w = tx->w + (size_t)x * tx->k;
        const float *p = s + (size_t)tx->first[x] * 3;
        float acc[3] = { 0, 0, 0 };

        for (j = 0; j < tx->k; j++)
            for (c = 0; c < 3; c++)
                acc[c] += w[j] * p[j * 3 + c];
        for (c = 0; c < 3; c++)
            m[x * 3 + c] = acc[c];
    }
}
