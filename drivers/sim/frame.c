/* SPDX-License-Identifier: MIT */
/*
 * The frame pipeline: sample the slide's transmittance at the frame's
 * pixels (plus a border the blur needs), smear it by the stage motion
 * during the exposure, blur it by defocus and the optics, then expose it
 * on the sensor: lamp × stain light × exposure × gain × white balance ×
 * vignetting (per channel, quadratic in the radius, the configured
 * corner/centre ratio exactly at the corners), shot and read noise from a
 * keyed table of normal deviates, dark level, rounding and clipping to
 * 8 bits.  Scan frames stream row by row from the tiles to the sensor;
 * other shots go through a buffer of the whole region.  Both compute
 * every sample the same way (the golden-frame test pins them).
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/util.h"


/* The sensor's per-frame constants, as rows of w * 3 values (rounded up
 * to a multiple of 4) so the per-pixel work runs four samples at a time.
 * Vignetting is 1 - (1 - corner_c) (cx[u] + cy[v]) with cx, cy the
 * squared normalised offsets, each 0.5 at the edges, so the corners get
 * exactly the configured ratio. */
struct sensor {
    size_t n;                       /* w * 3 rounded up to 16 */
    float *scale;                   /* DN for T = 1 at the centre */
    float *cvig;                    /* 1 - corner, per channel */
    float *cx;                      /* cx[u] per sample */
    float *cy;                      /* per row */
    float *kvar;                    /* DN² per DN of signal */
    float *noise;                   /* this row's N(0, 1) * noise_mul */
    float *dn;                      /* this row's output before rounding */
};

static double
edge_term(int i, int n)
{
    double d = n > 1 ? (i - (n - 1) / 2.0) / ((n - 1) / 2.0) : 0;

    return d * d / 2;
}

static int
sensor_make(struct sensor *ss, struct sim *s, const struct sim__shot *sh)
{
    size_t i;
    int c, v;
    float *rows[7];

    memset(ss, 0, sizeof(*ss));
    ss->n = ((size_t)sh->w * 3 + 15) & ~(size_t)15;
    for (c = 0; c < 7; c++) {
        rows[c] = malloc((c == 3 ? (size_t)sh->h : ss->n) * sizeof(float));
        if (rows[c] == NULL) {
            while (c-- > 0)
                free(rows[c]);
            return -ENOMEM;
        }
    }
    ss->scale = rows[0];
    ss->cvig = rows[1];
    ss->cx = rows[2];
    ss->cy = rows[3];
    ss->kvar = rows[4];
    ss->noise = rows[5];
    ss->dn = rows[6];
    for (i = 0; i < ss->n; i++) {
        c = (int)(i % 3);
        ss->scale[i] = sh->lamp ? (float)sh->scale[c] : 0;
        ss->cvig[i] = (float)(1 - s->cfg.vignette_corner[c]);
        ss->cx[i] = (float)edge_term((int)(i / 3) < sh->w ? (int)(i / 3)
                                                          : sh->w - 1, sh->w);
        ss->kvar[i] = (float)(sh->gain_rgb[c] / s->cfg.e_per_dn);
    }
    for (v = 0; v < sh->h; v++)
        ss->cy[v] = (float)edge_term(v, sh->h);
    return 0;
}

static void
sensor_free(struct sensor *ss)
{
    free(ss->scale);
    free(ss->cvig);
    free(ss->cx);
    free(ss->cy);
    free(ss->kvar);
    free(ss->noise);
    free(ss->dn);
}

/* dst = (nz[a..] + nz[b..]) * mul over n samples, windows wrapping around
 * the table. */
static void
noise_row(float *dst, const float *nz, uint32_t a, uint32_t b, size_t n,
          float mul)
{
    sim_v4 m4 = sim__splat(mul);
    size_t done = 0, k, i;

    while (done < n) {
        k = n - done;
        if (k > SIM_NOISE_N - a)
            k = SIM_NOISE_N - a;
        if (k > SIM_NOISE_N - b)
            k = SIM_NOISE_N - b;
        for (i = 0; i + 4 <= k; i += 4)
            sim__st(dst + done + i, (sim__ld(nz + a + i) +
                                     sim__ld(nz + b + i)) * m4);
        for (; i < k; i++)
            dst[done + i] = (nz[a + i] + nz[b + i]) * mul;
        done += k;
        a = (uint32_t)((a + k) & (SIM_NOISE_N - 1));
        b = (uint32_t)((b + k) & (SIM_NOISE_N - 1));
    }
}

/* One row of the sensor: transmittance t (w * 3) → 8-bit DN; returns the
 * number of saturated samples.
 * LIMIT: no fixed-pattern noise, hot pixels or pixel response
 * non-uniformity; flat-field tests see vignetting only. */
static long
expose_row(struct sim *s, const struct sim__shot *sh, struct sensor *ss,
           const float *t, int v, uint8_t *out)
{
    uint64_t h1 = rng_mix64(sh->noise_key ^ (uint64_t)v * 0x9e37ULL);
    struct sim__sensor_row r = {
        ss->scale, ss->cvig, ss->cx, ss->kvar, ss->noise, t, ss->dn,
        ss->cy[v], (float)sh->dark_dn,
        (float)(s->cfg.read_noise_dn * s->cfg.read_noise_dn + 1e-6),
    };

    noise_row(ss->noise, s->noise, (uint32_t)h1 & (SIM_NOISE_N - 1),
              (uint32_t)(h1 >> 32) & (SIM_NOISE_N - 1), ss->n,
              (float)(sh->noise_mul * M_SQRT1_2));
    return sim__sensor_row(&r, (size_t)sh->w * 3, out, sh->wide);
}

static int
max_tap(const struct sim__shot *sh)
{
    int a, i, m = 0;

    for (a = 0; a < 2; a++)
        for (i = 0; i < sh->ntaps[a]; i++)
            if (abs(sh->tap_off[a][i]) > m)
                m = abs(sh->tap_off[a][i]);
    return m;
}

/* Blank glass at the centre level, no vignetting or noise: the frame of
 * a timing run (render = 0). */
static int
flat_frame(struct sim__source *src, const struct sim__shot *sh,
           struct img **out, struct ss_err *err)
{
    struct img *im = img_new(sh->w, sh->h, 3, IMG_U8);
    uint8_t v[3];
    size_t i;
    int c;

    if (im == NULL)
        return err_set(err, -ENOMEM, "out of memory for a frame");
    for (c = 0; c < 3; c++)
        v[c] = (uint8_t)fmin(255, sh->dark_dn + 0.5 +
                             (sh->lamp ? sh->scale[c] * src->glass[c] : 0));
    for (i = 0; i < (size_t)sh->w * sh->h; i++)
        memcpy((uint8_t *)im->data + i * 3, v, 3);
    *out = im;
    return 0;
}

/* Whether every tap of k stays within m pixels: the border rendered
 * around the frame is then wider than the kernel's reach, so no output
 * pixel depends on how the filters treat the edges of the region. */
static bool
within(const struct sim__kernel *k, int m)
{
    int t;

    for (t = 0; t < k->n; t++)
        if (abs(k->off[t]) > m)
            return false;
    return true;
}

/*
 * The frame in one streaming pass, for blur that is one kernel per axis:
 * region rows arrive from the source one at a time, are filtered along x
 * into a ring, and each frame row mixes its ring rows along y and goes
 * straight to the sensor.  Every sample is computed with the same
 * operations in the same order as by the whole-region path (render, then
 * sim__optics(), then the sensor), so frames are identical; only the
 * working set is a few rows instead of the region.
 */
static int
shoot_streamed(struct sim *s, struct sim__source *src,
               const struct sim__shot *sh, const struct sim__kernel *kx,
               const struct sim__kernel *ky, int m, struct sensor *ss,
               struct img *im, long *sat, struct ss_err *err)
{
    int W = sh->w + 2 * m, lo = 0, hi = 0, rs, t, v, g, k, next, rc = 0;
    size_t row = (size_t)W * 3, stride = row + 16;
    size_t ostride = (size_t)sh->w * 3 + 16;
    bool filt = kx->n > 1 || ky->n > 1, four = sim__kernel_blocked(ky);
    struct sim__stream *st = NULL;
    const float *rows[164];
    float *ring, *b, *o, *outs[4];

    for (t = 0; t < ky->n; t++) {
        lo = ky->off[t] < lo ? ky->off[t] : lo;
        hi = ky->off[t] > hi ? ky->off[t] : hi;
    }
    /* Frame rows go four at a time through the vertical filter when it
     * has a blocked path: the ring holds the kernel's span plus three
     * rows. */
    rs = hi - lo + 4;
    ring = sim__scratch((size_t)rs * stride * sizeof(float));
    b = sim__scratch(stride * sizeof(float));
    o = sim__scratch(4 * ostride * sizeof(float));
    if (ring == NULL || b == NULL || o == NULL)
        rc = err_set(err, -ENOMEM, "out of memory for a frame");
    else
        memset(b, 0, stride * sizeof(float));
    if (rc == 0 && sh->lamp)
        rc = sim__stream_open(src, sh->x_um - m * sh->pixel_um -
                              s->geo.image_x_um, sh->y_um - m *
                              sh->pixel_um - s->geo.image_y_um, W,
                              sh->h + 2 * m, sh->pixel_um, &st, err);
    for (k = 0; k < 4; k++)
        outs[k] = o + ostride * (size_t)k;
    for (v = 0, next = m + lo; rc == 0 && v < sh->h; v += g) {
        g = filt && four && sh->h - v >= 4 ? 4 : 1;
        for (; rc == 0 && next <= m + v + g - 1 + hi; next++) {
            float *r = ring + (size_t)(next % rs) * stride;

            /* Dark frames stream zeros through the same filters. */
            if (st != NULL)
                rc = sim__stream_row(st, next, filt ? b : r, err);
            else if (!filt)
                memcpy(r, b, row * sizeof(float));
            if (rc == 0 && filt)
                sim__row_filter(b, r, row, kx, sh->wide);
        }
        if (rc < 0)
            break;
        if (!filt) {
            *sat += expose_row(s, sh, ss, ring + (size_t)((m + v) % rs) *
                               stride + (size_t)m * 3, v, img_u8(im, 0, v));
            continue;
        }
        for (t = 0; t < hi - lo + g; t++)
            rows[t] = ring + (size_t)((m + v + lo + t) % rs) * stride +
                      (size_t)m * 3;
        if (g == 4) {
            sim__mix_kernel4(outs, rows, ky, (size_t)sh->w * 3, sh->wide);
        } else {
            for (t = 0; t < ky->n; t++)
                rows[t] = rows[ky->off[t] - lo];
            sim__mix_kernel(outs[0], rows, ky, (size_t)sh->w * 3,
                            sh->wide);
        }
        for (k = 0; k < g; k++)
            *sat += expose_row(s, sh, ss, outs[k], v + k,
                               img_u8(im, 0, v + k));
    }
    sim__stream_close(st);
    sim__scratch_free(ring);
    sim__scratch_free(b);
    sim__scratch_free(o);
    return rc;
}

/* The frame through a buffer of the whole region: render it, blur it
 * (sim__optics(), for any blur), expose it. */
static int
shoot_whole(struct sim *s, struct sim__source *src,
            const struct sim__shot *sh, int m, struct sensor *ss,
            struct img *im, long *sat, struct ss_err *err)
{
    int W = sh->w + 2 * m, H = sh->h + 2 * m, v, rc = 0;
    float *buf = sim__scratch((size_t)W * H * 3 * sizeof(float));

    if (buf == NULL)
        return err_set(err, -ENOMEM, "out of memory for a frame");
    if (sh->lamp)
        rc = sim__source_render(src, sh->x_um - m * sh->pixel_um -
                                s->geo.image_x_um,
                                sh->y_um - m * sh->pixel_um -
                                s->geo.image_y_um, W, H, sh->pixel_um, buf,
                                err);
    else
        memset(buf, 0, (size_t)W * H * 3 * sizeof(float));
    if (rc == 0) {
        sim__optics(buf, W, H, sh);
        for (v = 0; v < sh->h; v++)
            *sat += expose_row(s, sh, ss, buf + ((size_t)(v + m) * W + m) *
                               3, v, img_u8(im, 0, v));
    }
    sim__scratch_free(buf);
    return rc;
}

int
sim__shoot(struct sim *s, struct sim__source *src,
           const struct sim__shot *sh, struct img **out,
           double *saturated_frac, struct ss_err *err)
{
    int m = (int)ceil(3 * sh->blur_px) + 2 + max_tap(sh), rc;
    struct sim__kernel kx, ky;
    double t0 = util_now_ms();
    struct sensor ss;
    struct img *im;
    long sat = 0;
    bool stream;

    *saturated_frac = 0;
    if (!s->cfg.render)
        return flat_frame(src, sh, out, err);
    if (m > 400)
        m = 400;
    im = img_new(sh->w, sh->h, 3, IMG_U8);
    if (im == NULL || sensor_make(&ss, s, sh) < 0) {
        img_free(im);
        return err_set(err, -ENOMEM, "out of memory for a frame");
    }
    stream = sim__optics_kernels(sh, &kx, &ky) && within(&kx, m) &&
             within(&ky, m);
    if (stream)
        rc = shoot_streamed(s, src, sh, &kx, &ky, m, &ss, im, &sat, err);
    else
        rc = shoot_whole(s, src, sh, m, &ss, im, &sat, err);
    sensor_free(&ss);
    if (rc < 0) {
        img_free(im);
        return rc;
    }
    *saturated_frac = (double)sat / ((double)sh->w * sh->h * 3);
    log_debug("sim", "frame %s ms=%.1f", stream ? "streamed" : "whole",
              util_now_ms() - t0);
    *out = im;
    return 0;
}
