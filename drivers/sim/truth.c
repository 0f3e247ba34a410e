/* SPDX-License-Identifier: MIT */
/*
 * Ground truth on demand: the ideal image of any stage rectangle, the
 * phantom's label map and statistics, and sim_snap(), a whole move-settle-
 * capture cycle for tools and tests.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
check_rect(int w, int h, double pixel_um, struct ss_err *err)
{
    if (w <= 0 || h <= 0 || (double)w * h > 4e8)
        return err_set(err, -EINVAL, "simulator: render size %dx%d is "
                       "outside 1..4e8 pixels", w, h);
    if (!(pixel_um > 0.01 && pixel_um < 1000))
        return err_set(err, -EINVAL, "simulator: pixel size %g um must be "
                       "more than 0.01 and less than 1000", pixel_um);
    return 0;
}

static int
render_scaled(struct sim *s, double x_um, double y_um, int w, int h,
              double pixel_um, double white, struct img **out,
              struct ss_err *err)
{
    float *buf;
    struct img *im;
    double k[3];
    size_t i;
    int rc = check_rect(w, h, pixel_um, err), c;

    *out = NULL;
    if (rc < 0)
        return rc;
    buf = malloc((size_t)w * h * 3 * sizeof(float));
    im = img_new(w, h, 3, IMG_U8);
    if (buf == NULL || im == NULL) {
        free(buf);
        img_free(im);
        return err_set(err, -ENOMEM, "simulator: out of memory");
    }
    pthread_rwlock_rdlock(&s->srclock);
    for (c = 0; c < 3; c++)
        k[c] = white > 0 ? white / s->src->glass[c] : 255;
    rc = sim__source_render(s->src, x_um - s->geo.image_x_um,
                            y_um - s->geo.image_y_um, w, h, pixel_um, buf,
                            err);
    pthread_rwlock_unlock(&s->srclock);
    for (i = 0; rc == 0 && i < (size_t)w * h * 3; i++) {
        double v = buf[i] * k[i % 3];

        ((uint8_t *)im->data)[i] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255
                                             : v + 0.5);
    }
    free(buf);
    if (rc < 0) {
        img_free(im);
        return err_prefix(err, "simulator");
    }
    *out = im;
    return 0;
}

int
sim_render_truth(struct sim *s, double x_um, double y_um, int w, int h,
                 double pixel_um, struct img **out, struct ss_err *err)
{
    return render_scaled(s, x_um, y_um, w, h, pixel_um, 0, out, err);
}

int
sim_render_truth_white(struct sim *s, double x_um, double y_um, int w,
                       int h, double pixel_um, double white_dn,
                       struct img **out, struct ss_err *err)
{
    if (!(white_dn > 0 && white_dn <= 255))
        return err_set(err, -EINVAL, "simulator: white level %g is outside "
                       "0..255", white_dn);
    return render_scaled(s, x_um, y_um, w, h, pixel_um, white_dn, out, err);
}

int
sim_render_labels(struct sim *s, double x_um, double y_um, int w, int h,
                  double pixel_um, struct img **out, struct ss_err *err)
{
    struct img *im;
    int rc = check_rect(w, h, pixel_um, err);

    *out = NULL;
    if (rc < 0)
        return rc;
    im = img_new(w, h, 1, IMG_U8);
    if (im == NULL)
        return err_set(err, -ENOMEM, "simulator: out of memory");
    pthread_rwlock_rdlock(&s->srclock);
    if (s->src->ph == NULL) {
        pthread_rwlock_unlock(&s->srclock);
        img_free(im);
        return err_set(err, -ENOTSUP, "simulator: labels exist only for "
                       "phantom slides");
    }
    rc = sim__phantom_labels(s->src->ph, x_um - s->geo.image_x_um,
                             y_um - s->geo.image_y_um, w, h, pixel_um,
                             im->data);
    pthread_rwlock_unlock(&s->srclock);
    if (rc < 0) {
        img_free(im);
        return err_set(err, rc, "simulator: out of memory");
    }
    *out = im;
    return 0;
}

int
sim_phantom_truth(struct sim *s, double x_um, double y_um, double w_um,
                  double h_um, struct sim_phantom_truth *t,
                  struct ss_err *err)
{
    int rc;

    memset(t, 0, sizeof(*t));
    if (!(w_um > 0 && h_um > 0 && w_um * h_um < 1e10))
        return err_set(err, -EINVAL, "simulator: truth rectangle %gx%g um "
                       "is empty or too large", w_um, h_um);
    pthread_rwlock_rdlock(&s->srclock);
    if (s->src->ph == NULL)
        rc = err_set(err, -ENOTSUP, "simulator: ground truth exists only "
                     "for phantom slides");
    else
        rc = sim__phantom_truth(s->src->ph, x_um - s->geo.image_x_um,
                                y_um - s->geo.image_y_um, w_um, h_um, t);
    pthread_rwlock_unlock(&s->srclock);
    if (rc == -ENOMEM)
        return err_set(err, rc, "simulator: out of memory");
    return rc;
}

/* ---- one frame for tools --------------------------------------------- */

static int
wait_idle(struct stage *st, struct sim *s, struct ss_err *err)
{
    bool busy = true;
    int rc, n;

    for (n = 0; busy && n < 100000; n++) {
        rc = st->ops->is_busy(st, &busy, err);
        if (rc < 0)
            return rc;
        if (busy)
            sim_clock_advance(s, 5);
    }
    return 0;
}

int
sim_snap(struct sim *s, double x_um, double y_um, double z_um,
         double exposure_ms, double settle_ms, struct img **out,
         struct ss_err *err)
{
    struct camera *cam = NULL;
    struct stage *st = NULL;
    struct cam_settings cs;
    double pre[3] = { x_um - 50, y_um - 50, z_um - 10 };
    double to[3] = { x_um, y_um, z_um };
    int rc, stain, i;

    *out = NULL;
    pthread_mutex_lock(&s->mu);
    cs = s->cam;
    stain = s->src->stain;
    for (i = 0; i < 3; i++)
        if (pre[i] < s->geo.limits.min_um[i])
            pre[i] = s->geo.limits.min_um[i];
    pthread_mutex_unlock(&s->mu);
    cs.exposure_ms = exposure_ms > 0 ? exposure_ms
                                     : stain == SIM_STAIN_HE ? 250 : 600;
    rc = sim_camera_new(s, &cam, err);
    if (rc == 0)
        rc = sim_stage_new(s, &st, err);
    if (rc == 0)
        rc = st->ops->open(st, err);
    if (rc == 0)
        rc = cam->ops->open(cam, err);
    if (rc == 0)
        rc = cam->ops->configure(cam, &cs, err);
    if (rc == 0)
        rc = st->ops->move_abs(st, pre, err);
    if (rc == 0)
        rc = wait_idle(st, s, err);
    if (rc == 0)
        rc = st->ops->move_abs(st, to, err);
    if (rc == 0)
        rc = wait_idle(st, s, err);
    if (rc == 0) {
        sim_clock_advance(s, settle_ms);
        rc = cam->ops->capture(cam, out, err);
    }
    if (cam != NULL) {
        cam->ops->close(cam);
        camera_free(cam);
    }
    if (st != NULL) {
        st->ops->close(st);
        stage_free(st);
    }
    return rc;
}
