/* SPDX-License-Identifier: MIT */
/*
 * The frame pipeline: sample the slide's transmittance at the frame's
 * pixels (plus a border the blur needs), smear it by the stage motion
 * during the exposure, blur it by defocus and the optics, then expose it
 * on the sensor: lamp × stain light × exposure × gain × white balance ×
 * vignetting (per channel, quadratic in the radius, the configured
 * corner/centre ratio exactly at the corners), shot and read noise from a
 * keyed table of normal deviates, dark level, rounding and clipping to
 * 8 bits.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/util.h"

typedef int32_t sim_v4i __attribute__((vector_size(16)));

/* The sensor's per-frame constants, as rows of w * 3 values (rounded up
 * to a multiple of 4) so the per-pixel work runs four samples at a time.
 * Vignetting is 1 - (1 - corner_c) (cx[u] + cy[v]) with cx, cy the
 * squared normalised offsets, each 0.5 at the edges, so the corners get
 * exactly the configured ratio. */
struct sensor {
    size_t n;                       /* w * 3 rounded up */
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
    ss->n = ((size_t)sh->w * 3 + 3) & ~(size_t)3;
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
    size_t done = 0, k, i;

    while (done < n) {
        k = n - done;
        if (k > SIM_NOISE_N - a)
            k = SIM_NOISE_N - a;
        if (k > SIM_NOISE_N - b)
            k = SIM_NOISE_N - b;
        for (i = 0; i < k; i++)
            dst[done + i] = (nz[a + i] + nz[b + i]) * mul;
        done += k;
        a = (uint32_t)((a + k) & (SIM_NOISE_N - 1));
        b = (uint32_t)((b + k) & (SIM_NOISE_N - 1));
    }
}

/* sqrt for x > 0 without libm: bit-level estimate of 1/sqrt, two Newton
 * steps (relative error near 1e-6), times x. */
static inline sim_v4
vsqrt(sim_v4 x)
{
    sim_v4i i;
    sim_v4 y, half = x * sim__splat(0.5f);

    memcpy(&i, &x, sizeof(i));
    i = (sim_v4i){ 0x5f3759df, 0x5f3759df, 0x5f3759df, 0x5f3759df } -
        (i >> 1);
    memcpy(&y, &i, sizeof(y));
    y = y * (sim__splat(1.5f) - half * y * y);
    y = y * (sim__splat(1.5f) - half * y * y);
    return x * y;
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
    sim_v4 dark = sim__splat((float)sh->dark_dn), one = sim__splat(1);
    sim_v4 rd2 = sim__splat((float)(s->cfg.read_noise_dn *
                                    s->cfg.read_noise_dn + 1e-6));
    sim_v4 cy = sim__splat(ss->cy[v]);
    size_t i, n = (size_t)sh->w * 3;
    long sat = 0;

    noise_row(ss->noise, s->noise, (uint32_t)h1 & (SIM_NOISE_N - 1),
              (uint32_t)(h1 >> 32) & (SIM_NOISE_N - 1), ss->n,
              (float)(sh->noise_mul * M_SQRT1_2));
    for (i = 0; i < ss->n; i += 4) {
        sim_v4 g = sim__ld(ss->scale + i) *
                   (one - sim__ld(ss->cvig + i) * (sim__ld(ss->cx + i) + cy));
        sim_v4 sig = g * sim__ld(t + i), sd;
        sim_v4i pos = sig > sim__splat(0);

        sig = (sim_v4)((sim_v4i)sig & pos);
        sd = vsqrt(sig * sim__ld(ss->kvar + i) + rd2);
        sim__st(ss->dn + i, dark + sig + sd * sim__ld(ss->noise + i));
    }
    for (i = 0; i < n; i++) {
        float dn = ss->dn[i];

        if (dn >= 254.5f) {
            out[i] = 255;
            sat++;
        } else {
            out[i] = dn <= 0 ? 0 : (uint8_t)(dn + 0.5f);
        }
    }
    return sat;
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

int
sim__shoot(struct sim *s, struct sim__source *src,
           const struct sim__shot *sh, struct img **out,
           double *saturated_frac, struct ss_err *err)
{
    int m = (int)ceil(3 * sh->blur_px) + 2 + max_tap(sh), W, H, v, rc = 0;
    struct sensor ss;
    struct img *im = NULL;
    double t0 = util_now_ms(), t1, t3;
    float *buf = NULL;
    long sat = 0;

    *saturated_frac = 0;
    if (!s->cfg.render)
        return flat_frame(src, sh, out, err);
    if (m > 400)
        m = 400;
    W = sh->w + 2 * m;
    H = sh->h + 2 * m;
    buf = sim__scratch((size_t)W * H * 3 * sizeof(float));
    im = img_new(sh->w, sh->h, 3, IMG_U8);
    memset(&ss, 0, sizeof(ss));
    if (buf == NULL || im == NULL || sensor_make(&ss, s, sh) < 0) {
        rc = err_set(err, -ENOMEM, "out of memory for a frame");
        goto out;
    }
    if (sh->lamp) {
        rc = sim__source_render(src, sh->x_um - m * sh->pixel_um -
                                s->geo.image_x_um,
                                sh->y_um - m * sh->pixel_um -
                                s->geo.image_y_um, W, H, sh->pixel_um, buf,
                                err);
        if (rc < 0)
            goto out;
    } else {
        memset(buf, 0, (size_t)W * H * 3 * sizeof(float));
    }
    t1 = util_now_ms();
    sim__optics(buf, W, H, sh);
    t3 = util_now_ms();
    for (v = 0; v < sh->h; v++)
        sat += expose_row(s, sh, &ss, buf + ((size_t)(v + m) * W + m) * 3, v,
                          img_u8(im, 0, v));
    *saturated_frac = (double)sat / ((double)sh->w * sh->h * 3);
    log_debug("sim", "frame render_ms=%.1f optics_ms=%.1f sensor_ms=%.1f",
              t1 - t0, t3 - t1, util_now_ms() - t3);
out:
    sensor_free(&ss);
    sim__scratch_free(buf);
    if (rc < 0) {
        img_free(im);
        return rc;
    }
    *out = im;
    return 0;
}
