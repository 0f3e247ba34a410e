/* SPDX-License-Identifier: MIT */
/*
 * The simulated camera and overview camera.  A capture takes the stage's
 * true trajectory over the exposure window from the motion model, turns
 * it into a mean position, a motion smear and a defocus blur, advances
 * the virtual clock by exposure and readout, and hands the rest to the
 * frame pipeline (frame.c) outside the instrument lock.  Faults injected
 * with sim_fault_set() are taken here.
 *
 * The sensor buffers one frame, so the camera offers the split capture
 * of drivers/camera.h: capture_begin() advances the clock by the exposure
 * only and the readout runs on until cam_ready_ms while the stage may
 * move; capture_end() advances the clock to cam_ready_ms and renders the
 * frame planned at the exposure, so what happens after the exposure never
 * shows in it.  Any exposure first waits for the sensor to be read out.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rng.h"

#define TRAJ_SAMPLES 64

struct sim_cam {
    struct sim *s;
    bool open;
    /* The split capture waiting for capture_end(). */
    bool pending;
    bool fault_due;                 /* its frame never comes: fault */
    struct sim__fault fault;
    struct sim__shot sh;
    struct sim_truth t;
};

/* ---- exposure planning ------------------------------------------------ */

/* Sparse taps of the motion smear along one axis, from per-sample
 * displacements in pixels (linear split between neighbouring bins); at
 * most 18 bins, wider than a pixel for long smears. */
static void
motion_taps(const double *dev, int n, int *ntaps, int *off, float *w)
{
    double lo = dev[0], hi = dev[0], bw, hist[64];
    int i, k, base, nb;

    for (i = 1; i < n; i++) {
        lo = fmin(lo, dev[i]);
        hi = fmax(hi, dev[i]);
    }
    *ntaps = 0;
    if (hi - lo < 0.05)
        return;
    bw = fmax(1.0, ceil((hi - lo + 2) / 16));
    base = (int)floor(lo / bw);
    nb = (int)floor(hi / bw) - base + 2;
    memset(hist, 0, sizeof(hist));
    for (i = 0; i < n; i++) {
        double u = dev[i] / bw - base, f = u - floor(u);

        k = (int)floor(u);
        hist[k] += (1 - f) / n;
        hist[k + 1] += f / n;
    }
    for (k = 0; k < nb && k < 64; k++) {
        if (hist[k] <= 1e-9)
            continue;
        off[*ntaps] = (int)((k + base) * bw);
        w[*ntaps] = (float)hist[k];
        (*ntaps)++;
    }
}

static uint64_t
dbl_bits(double v)
{
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    return u;
}

/* Waits for the readout of the frame before; s->mu held.  Returns the
 * real time to sleep. */
static double
sensor_wait(struct sim *s)
{
    double sl;

    if (s->cam_ready_ms <= s->now_ms)
        return 0;
    sl = sim__advance(s, s->cam_ready_ms - s->now_ms);
    s->now_ms = s->cam_ready_ms;
    return sl;
}

static double
readout_ms(const struct sim *s, bool preview)
{
    return preview ? s->cfg.preview_readout_ms : s->cfg.readout_ms;
}

/* Fills the shot and the truth for an exposure starting now; s->mu held.
 * Advances the clock by the exposure and, unless split, the readout; a
 * split exposure leaves the sensor reading out until s->cam_ready_ms. */
static double
plan_shot(struct sim *s, bool preview, bool split, struct sim__shot *sh,
          struct sim_truth *t)
{
    const struct sim_config *c = &s->cfg;
    int bin = preview ? c->preview_binning : 1, a, k;
    double e = s->cam.exposure_ms, p[3][TRAJ_SAMPLES], mean[3] = { 0 };
    double dev[TRAJ_SAMPLES], zf, def2 = 0, mot2 = 0, light, dark_cur;

    memset(sh, 0, sizeof(*sh));
    memset(t, 0, sizeof(*t));
    sh->w = c->sensor_w / bin;
    sh->h = c->sensor_h / bin;
    sh->pixel_um = s->pixel_um * bin;
    t->t_start_ms = s->now_ms;
    for (a = 0; a < 3; a++) {
        sim__axis_pos(s, a, s->now_ms, &t->reported_um[a], NULL);
        t->cmd_um[a] = s->ax[a].s_to;
        for (k = 0; k < TRAJ_SAMPLES; k++) {
            sim__axis_pos(s, a, s->now_ms + (k + 0.5) * e / TRAJ_SAMPLES,
                          NULL, &p[a][k]);
            /* To the picometre: the same motion at another clock reading
             * must give bit-identical frames, whatever the rounding of
             * the absolute times. */
            p[a][k] = nearbyint(p[a][k] * 1e6) / 1e6;
            mean[a] += p[a][k] / TRAJ_SAMPLES;
        }
    }
    for (a = 0; a < 2; a++) {
        for (k = 0; k < TRAJ_SAMPLES; k++) {
            dev[k] = (p[a][k] - mean[a]) / sh->pixel_um;
            mot2 += (p[a][k] - mean[a]) * (p[a][k] - mean[a]) /
                    TRAJ_SAMPLES;
        }
        motion_taps(dev, TRAJ_SAMPLES, &sh->ntaps[a], sh->tap_off[a],
                    sh->tap_w[a]);
    }
    /* LIMIT: defocus is taken at the frame centre and blurs the whole
     * frame alike; a tilted slide is not sharper on one side of a frame.
     * LIMIT: the smear is separable (x smear times y smear), so a diagonal
     * one looks like a small box, and a frame taken mid-move shows the
     * 64 sampled positions as steps. */
    zf = sim__focus_z(s, mean[0] + sh->w * sh->pixel_um / 2,
                      mean[1] + sh->h * sh->pixel_um / 2);
    for (k = 0; k < TRAJ_SAMPLES; k++) {
        double d = (p[2][k] - zf) / s->dof_um;
        def2 += d * d / TRAJ_SAMPLES;
    }
    sh->blur_px = sqrt(c->psf_px * c->psf_px + def2) / bin;
    sh->x_um = mean[0];
    sh->y_um = mean[1];
    light = c->light_dn_per_ms[s->light_stain];
    dark_cur = c->dark_current_dn_s * e / 1000;
    for (a = 0; a < 3; a++) {
        sh->gain_rgb[a] = s->cam.gain * s->cam.wb[a];
        sh->scale[a] = light * e * sh->gain_rgb[a] * c->lamp_rgb[a];
    }
    sh->dark_dn = c->dark_dn + dark_cur;
    sh->noise_mul = c->noise_scale / bin;
    sh->lamp = s->lamp;
    sh->wide = sim__simd_wide(c);
    t->attempt = s->attempt++;
    sh->noise_key = rng_key(c->seed, (uint64_t)llround(mean[0] * 1000),
                            (uint64_t)llround(mean[1] * 1000),
                            (uint64_t)llround(mean[2] * 1000) ^
                            ((uint64_t)t->attempt << 40) ^
                            ((uint64_t)preview << 60) ^
                            ((uint64_t)s->lamp << 61) ^
                            rng_mix64(dbl_bits(e) ^ dbl_bits(s->cam.gain)));
    t->x_um = mean[0];
    t->y_um = mean[1];
    t->z_um = mean[2];
    t->focus_z_um = zf;
    t->dz_um = mean[2] - zf;
    t->motion_um = sqrt(mot2);
    t->blur_px = sh->blur_px;
    t->pixel_um = sh->pixel_um;
    t->exposure_ms = e;
    t->gain = s->cam.gain;
    t->lamp = s->lamp;
    t->preview = preview;
    t->w = sh->w;
    t->h = sh->h;
    t->index = s->counters[preview ? SIM_C_PREVIEW : SIM_C_CAPTURE];
    t->t_end_ms = s->now_ms + e;
    if (!split) {
        double sl = sim__advance(s, e + readout_ms(s, preview));

        s->cam_ready_ms = s->now_ms;
        return sl;
    }
    s->cam_ready_ms = s->now_ms + e + readout_ms(s, preview);
    return sim__advance(s, e);
}

/* ---- faults ------------------------------------------------------------ */

/* Whether the camera answers at all; s->mu held.
 * LIMIT: an unplugged camera answers again when the fault ends, without
 * having to be reopened as a real one would. */
static int
cam_present(struct sim *s, struct sim_cam *p, bool need_open,
            struct ss_err *err)
{
    if (s->unplugged && s->unplug_until_ms > 0 &&
        s->now_ms >= s->unplug_until_ms)
        s->unplugged = false;
    if (s->unplugged) {
        if (s->unplug_until_ms <= 0 && --s->unplug_calls <= 0)
            s->unplugged = false;
        sim__advance(s, s->cfg.query_ms);
        return err_set(err, SS_EGONE, "camera: device disconnected "
                       "(no such device on the bus)");
    }
    if (need_open && !p->open)
        return err_set(err, -ENODEV, "camera: not open");
    return 0;
}

static int
cam_fault(struct sim *s, struct sim_cam *p, const struct sim__fault *f,
          struct ss_err *err)
{
    unsigned gen;

    switch (f->type) {
    case SIM_F_BUSY:
        sim__advance(s, s->cfg.query_ms);
        return err_set(err, SS_EBUSY, "camera busy");
    case SIM_F_TIMEOUT:
        sim__advance(s, s->cam.exposure_ms + s->cfg.readout_ms + 5000);
        return err_set(err, SS_ETIMEOUT, "camera: capture timed out after "
                       "%.0f ms", s->cam.exposure_ms + s->cfg.readout_ms +
                       5000);
    case SIM_F_HANG:
        gen = s->hang_gen;
        log_notice("sim", "capture hangs until released");
        /* Only instrument state is read after waking: the camera object
         * may be gone by then. */
        while (!s->dying && s->hang_gen == gen)
            pthread_cond_wait(&s->cv, &s->mu);
        return err_set(err, SS_ECANCELED, "camera: hung capture released");
    case SIM_F_UNPLUG:
        s->unplugged = true;
        s->unplug_until_ms = f->ms > 0 ? s->now_ms + f->ms : 0;
        s->unplug_calls = f->count;
        return cam_present(s, p, false, err);
    default:
        return 0;
    }
}

/* ---- camera operations ------------------------------------------------ */

/* Renders a planned shot into *frame outside the instrument lock, then
 * sleeps sl real ms and records the truth. */
static int
develop(struct sim *s, const struct sim__shot *sh, struct sim_truth *t,
        double sl, bool preview, struct img **frame, struct ss_err *err)
{
    int rc;

    pthread_rwlock_rdlock(&s->srclock);
    rc = sim__shoot(s, s->src, sh, frame, &t->saturated_frac, err);
    pthread_rwlock_unlock(&s->srclock);
    sim__sleep_real(sl);
    if (rc < 0)
        return err_prefix(err, "camera");
    pthread_mutex_lock(&s->mu);
    s->truth = *t;
    pthread_mutex_unlock(&s->mu);
    log_debug("sim", "%s x_um=%.2f y_um=%.2f dz_um=%.2f blur_px=%.2f "
              "exposure_ms=%.0f", preview ? "preview" : "capture", t->x_um,
              t->y_um, t->dz_um, t->blur_px, t->exposure_ms);
    return 0;
}

/* Drops a split exposure nobody collected; s->mu held. */
static void
drop_pending(struct sim_cam *p)
{
    if (p->pending)
        log_debug("sim", "uncollected frame dropped");
    p->pending = false;
    p->fault_due = false;
}

static int
cam_take(struct camera *cam, bool preview, struct img **frame,
         struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    enum sim__counter ctr = preview ? SIM_C_PREVIEW : SIM_C_CAPTURE;
    struct sim__fault f;
    struct sim__shot sh;
    struct sim_truth t;
    double sl = 0;
    int rc;

    *frame = NULL;
    pthread_mutex_lock(&s->mu);
    drop_pending(p);
    s->counters[ctr]++;
    rc = cam_present(s, p, true, err);
    if (rc == 0 && sim__fault_take(s, ctr, &f) != 0)
        rc = cam_fault(s, p, &f, err);
    if (rc == 0) {
        sl = sensor_wait(s);
        sl += plan_shot(s, preview, false, &sh, &t);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        return rc;
    return develop(s, &sh, &t, sl, preview, frame, err);
}

/* The exposure of a split capture.  A missed-frame fault (timeout, hang)
 * strikes at capture_end(), where a real camera would not deliver; the
 * others strike here. */
static int
cam_capture_begin(struct camera *cam, struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    struct sim__fault f;
    double sl = 0;
    int rc;

    pthread_mutex_lock(&s->mu);
    drop_pending(p);
    s->counters[SIM_C_CAPTURE]++;
    rc = cam_present(s, p, true, err);
    if (rc == 0 && sim__fault_take(s, SIM_C_CAPTURE, &f) != 0) {
        if (f.type == SIM_F_TIMEOUT || f.type == SIM_F_HANG) {
            p->fault_due = true;
            p->fault = f;
        } else {
            rc = cam_fault(s, p, &f, err);
        }
    }
    if (rc == 0) {
        sl = sensor_wait(s);
        if (p->fault_due) {
            s->cam_ready_ms = s->now_ms + s->cam.exposure_ms +
                              s->cfg.readout_ms;
            sl += sim__advance(s, s->cam.exposure_ms);
        } else {
            sl += plan_shot(s, false, true, &p->sh, &p->t);
        }
        p->pending = true;
    }
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    return rc;
}

static int
cam_capture_end(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    struct sim__fault f;
    struct sim__shot sh;
    struct sim_truth t;
    double sl = 0;
    bool missed;
    int rc = 0;

    *frame = NULL;
    pthread_mutex_lock(&s->mu);
    if (!p->pending) {
        pthread_mutex_unlock(&s->mu);
        return err_set(err, -EINVAL, "camera: no capture begun");
    }
    f = p->fault;
    missed = p->fault_due;
    sh = p->sh;
    t = p->t;
    p->pending = false;
    p->fault_due = false;
    if (missed && f.type == SIM_F_TIMEOUT) {
        /* The exposure and readout are spent already. */
        sim__advance(s, s->cam_ready_ms + 5000 - s->now_ms);
        rc = err_set(err, SS_ETIMEOUT, "camera: capture timed out after "
                     "%.0f ms", s->cam.exposure_ms + s->cfg.readout_ms +
                     5000);
    } else if (missed) {
        rc = cam_fault(s, p, &f, err);      /* p may be gone after it */
    } else {
        sl = sensor_wait(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        return rc;
    return develop(s, &sh, &t, sl, false, frame, err);
}

static int
cam_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    return cam_take(cam, false, frame, err);
}

static int
cam_preview(struct camera *cam, struct img **frame, struct ss_err *err)
{
    return cam_take(cam, true, frame, err);
}

static int
cam_open(struct camera *cam, struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    struct sim__fault f;
    int rc;

    pthread_mutex_lock(&s->mu);
    s->counters[SIM_C_OPEN]++;
    rc = cam_present(s, p, false, err);
    if (rc == 0 && sim__fault_take(s, SIM_C_OPEN, &f) != 0) {
        if (f.type == SIM_F_HELD)
            rc = err_set(err, SS_EHELD, "camera: held by another program "
                         "(its USB interface is claimed)");
        else
            rc = cam_fault(s, p, &f, err);
    }
    if (rc == 0) {
        sim__advance(s, s->cfg.query_ms);
        p->open = true;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void
cam_close(struct camera *cam)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;

    pthread_mutex_lock(&s->mu);
    p->open = false;
    drop_pending(p);
    s->hang_gen++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int
cam_configure(struct camera *cam, const struct cam_settings *cs,
              struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    int rc;

    if (!(cs->exposure_ms > 0 && cs->exposure_ms <= 60000))
        return err_set(err, -EINVAL, "camera: exposure %.3f ms is outside "
                       "0..60000 ms", cs->exposure_ms);
    if (!(cs->gain > 0 && cs->gain <= 64))
        return err_set(err, -EINVAL, "camera: gain %.3f is outside 0..64",
                       cs->gain);
    if (!(cs->wb[0] > 0 && cs->wb[1] > 0 && cs->wb[2] > 0 &&
          cs->wb[0] < 16 && cs->wb[1] < 16 && cs->wb[2] < 16))
        return err_set(err, -EINVAL, "camera: white balance multipliers "
                       "must be in 0..16");
    pthread_mutex_lock(&s->mu);
    rc = cam_present(s, p, true, err);
    if (rc == 0) {
        s->cam = *cs;
        sim__advance(s, s->cfg.query_ms);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
cam_set_lamp(struct camera *cam, bool on, struct ss_err *err)
{
    struct sim_cam *p = cam->priv;
    struct sim *s = p->s;
    int rc;

    pthread_mutex_lock(&s->mu);
    rc = cam_present(s, p, true, err);
    if (rc == 0) {
        s->lamp = on;
        sim__advance(s, s->cfg.query_ms);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void
cam_destroy(struct camera *cam)
{
    struct sim_cam *p;

    if (cam == NULL)
        return;
    p = cam->priv;
    sim__unref(p->s);
    free(p);
    free(cam);
}

static const struct cam_ops sim_cam_ops = {
    .name = "sim",
    .open = cam_open,
    .close = cam_close,
    .configure = cam_configure,
    .capture = cam_capture,
    .preview = cam_preview,
    .set_lamp = cam_set_lamp,
    .destroy = cam_destroy,
    .capture_begin = cam_capture_begin,
    .capture_end = cam_capture_end,
};

struct camera *
sim__camera_make(struct sim *s)
{
    struct camera *cam = calloc(1, sizeof(*cam));
    struct sim_cam *p = calloc(1, sizeof(*p));

    if (cam == NULL || p == NULL) {
        free(cam);
        free(p);
        return NULL;
    }
    p->s = s;
    sim__ref(s);
    cam->ops = &sim_cam_ops;
    cam->priv = p;
    snprintf(cam->model, sizeof(cam->model), "slidescan simulated camera");
    cam->frame_w = s->cfg.sensor_w;
    cam->frame_h = s->cfg.sensor_h;
    return cam;
}

/* ---- overview camera --------------------------------------------------- */

/* The overview's longest side, px: a large slide is imaged coarser rather
 * than as a huge picture. */
#define OV_MAX_PX 4096

/* Renders the overview row by row into im (pixel (0, 0) at stage (0, 0)):
 * 228 DN for glass, a little noise keyed by the row. */
static int
ov_render(struct sim *s, const struct sim_geometry *g, double upp,
          struct img *im, struct ss_err *err)
{
    struct sim__stream *st = NULL;
    float *row = malloc((size_t)im->w * 3 * sizeof(float));
    struct rng r = { { 0, 0, 0, 0 }, 0, 0 };
    int rc, y;
    size_t i;

    if (row == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = sim__stream_open(s->src, -g->image_x_um, -g->image_y_um, im->w,
                          im->h, upp, &st, err);
    for (y = 0; rc == 0 && y < im->h; y++) {
        uint8_t *d = (uint8_t *)im->data + (size_t)y * im->w * 3;

        rc = sim__stream_row(st, y, row, err);
        rng_init(&r, rng_key(s->cfg.seed, 0x4f56ULL, (uint64_t)y, 0));
        for (i = 0; rc == 0 && i < (size_t)im->w * 3; i++) {
            double v = 228.0 * row[i] / s->src->glass[i % 3] + 4 +
                       1.2 * s->cfg.noise_scale * rng_gauss(&r);

            d[i] = (uint8_t)fmin(255, fmax(0, lrint(v)));
        }
    }
    sim__stream_close(st);
    free(row);
    return rc;
}

/* The overview camera images the specimen area (image, margins, blank
 * area), not the whole glass: tissue lies only there, and a small slide's
 * overview stays small.  LIMIT: the overview does not show the rest of
 * the 75 x 25 mm glass. */
static int
ov_capture(struct overview *ov, struct img **slide, struct ov_geometry *geo,
           struct ss_err *err)
{
    struct sim *s = ov->priv;
    double upp, sl;
    struct sim_geometry g;
    struct img *im = NULL;
    int rc;

    *slide = NULL;
    pthread_rwlock_rdlock(&s->srclock);     /* the slide stays put */
    pthread_mutex_lock(&s->mu);
    s->overviews++;
    g = s->geo;
    sl = sim__advance(s, s->cfg.overview_ms);
    pthread_mutex_unlock(&s->mu);
    upp = fmax(s->cfg.overview_um_per_px,
               fmax(g.area_w_um, g.area_h_um) / OV_MAX_PX);
    im = img_new((int)ceil(g.area_w_um / upp), (int)ceil(g.area_h_um / upp),
                 3, IMG_U8);
    rc = im != NULL ? ov_render(s, &g, upp, im, err)
                    : err_set(err, -ENOMEM, "out of memory");
    pthread_rwlock_unlock(&s->srclock);
    sim__sleep_real(sl);
    if (rc < 0) {
        img_free(im);
        return err_prefix(err, "overview");
    }
    geo->origin_x_um = 0;
    geo->origin_y_um = 0;
    geo->um_per_px = upp;
    *slide = im;
    return 0;
}

struct img *
sim__label_render(const struct sim__source *src)
{
    static const uint8_t ink[3] = { 20, 20, 30 };
    struct img *im = img_new(480, 320, 3, IMG_U8);

    if (im == NULL)
        return NULL;
    memset(im->data, 242, img_bytes(im));
    sim__text(im, 24, 40, 6, src->slide_id, ink);
    sim__text(im, 24, 140, 5, sim__stain_name(src->stain), ink);
    sim__text(im, 24, 250, 3, "SLIDESCAN SIM", ink);
    return im;
}

static int
ov_label(struct overview *ov, struct img **label, struct ss_err *err)
{
    struct sim *s = ov->priv;

    pthread_rwlock_rdlock(&s->srclock);
    *label = sim__label_render(s->src);
    pthread_rwlock_unlock(&s->srclock);
    if (*label == NULL)
        return err_set(err, -ENOMEM, "overview: out of memory");
    return 0;
}

static void
ov_destroy(struct overview *ov)
{
    if (ov == NULL)
        return;
    sim__unref(ov->priv);
    free(ov);
}

static const struct overview_ops sim_ov_ops = {
    .capture = ov_capture,
    .label = ov_label,
    .destroy = ov_destroy,
};

struct overview *
sim__overview_make(struct sim *s)
{
    struct overview *ov = calloc(1, sizeof(*ov));

    if (ov == NULL)
        return NULL;
    sim__ref(s);
    ov->ops = &sim_ov_ops;
    ov->priv = s;
    return ov;
}
