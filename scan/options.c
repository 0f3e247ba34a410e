/* SPDX-License-Identifier: MIT */
/*
 * Stain profiles and acquisition options with their defaults, and the
 * helpers shared by the acquisition steps: camera settings, motion
 * settings and autofocus through the microscope.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "scan/acq_int.h"

struct stain_default {
    const char *stain;
    double exposure_ms;
};

/* Exposures the lab uses: DAB stains need more light than H&E. */
static const struct stain_default stains[] = {
    { "HE", 250.0 },
    { "KI67", 600.0 },
    { "CK", 600.0 },
};

int
acq_profile_default(struct acq_profile *p, const char *stain,
                    struct ss_err *err)
{
    size_t i;

    memset(p, 0, sizeof(*p));
    for (i = 0; i < sizeof(stains) / sizeof(stains[0]); i++) {
        if (strcmp(stain, stains[i].stain) != 0)
            continue;
        snprintf(p->stain, sizeof(p->stain), "%s", stain);
        p->exposure_ms = stains[i].exposure_ms;
        p->gain = 1.0;
        p->wb[0] = p->wb[1] = p->wb[2] = 1.0;
        snprintf(p->objective, sizeof(p->objective), "20x");
        return 0;
    }
    return err_set(err, SS_ECONFIG, "stain profile: unknown stain '%s' "
                   "(known: HE, KI67, CK)", stain);
}

void
acq_options_default(struct acq_options *o)
{
    memset(o, 0, sizeof(*o));
    o->overlap = 0.10;
    o->calib_frames = 8;
    o->settle_ms = 50.0;
    o->backlash_um = 20.0;
    o->max_retakes = 1;
    o->sharp_rel_min = 0.75;
    o->backlash_z_um = 2.0;
    o->settle_tol_um = 0.5;
    o->white = 240.0;
    o->focus_z_um = 0.0;
    o->focus_range_um = 20.0;
    o->focus_points = 0;
    o->focus_exposure_ms = 40.0;
    o->refocus_range_um = 4.0;
}

void
acq__motion_cfg(const struct acq_options *o, struct motion_cfg *c)
{
    motion_cfg_default(c);
    c->backlash_um[0] = c->backlash_um[1] = o->backlash_um;
    c->backlash_um[2] = o->backlash_z_um;
    c->settle_ms = o->settle_ms;
    c->settle_z_ms = fmin(c->settle_z_ms, o->settle_ms);
    if (o->settle_tol_um > 0)
        c->settle_tol_um = o->settle_tol_um;
}

int
acq__set_camera(struct microscope *m, const struct acq_profile *p,
                const struct acq_options *o, bool focus, struct ss_err *err)
{
    struct cam_settings cs;
    int rc;

    cs.exposure_ms = p->exposure_ms;
    cs.gain = p->gain > 0 ? p->gain : 1.0;
    memcpy(cs.wb, p->wb, sizeof(cs.wb));
    if (focus && o->focus_exposure_ms > 0 &&
        o->focus_exposure_ms < p->exposure_ms) {
        cs.gain *= p->exposure_ms / o->focus_exposure_ms;
        cs.exposure_ms = o->focus_exposure_ms;
    }
    rc = m->cam->ops->configure(m->cam, &cs, err);
    if (rc != 0)
        err_prefix(err, "camera %s: setting exposure %.1f ms, gain %.2f",
                   m->cam->model, cs.exposure_ms, cs.gain);
    return rc;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double
acq__median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Sensor pixels per metric sample for probes spacing_um apart, so that
 * the focus curve is a few spacings wide.  The depth of field is taken as
 * twice the pixel size at the sample, as for an objective matched to its
 * camera.
 * LIMIT: an objective whose depth of field is far from that gets focus
 * curves too narrow or too wide for the coarse sweep. */
static int
sensor_bin(double spacing_um, double pixel_um)
{
    double want = 2.5 * spacing_um / (2.0 * pixel_um);
    int b = 1;

    while (b * 2 <= want + 1e-9 && b < 64)
        b *= 2;
    return b;
}

/* One autofocus probe: move z, take a frame (live view when the binning
 * allows), score it. */
static int
focus_probe(void *ctx, double z_um, double spacing_um, double *metric,
            struct ss_err *err)
{
    struct acq__focuser *f = ctx;
    struct camera *cam = f->m->cam;
    double target[3] = { f->x_um, f->y_um, z_um };
    int bin = sensor_bin(spacing_um, f->m->pixel_um), pv_bin, rc;
    bool preview = cam->ops->preview != NULL && bin >= 2;
    struct img *frame = NULL;

    rc = motion_move_to(f->mo, target, NULL, err);
    if (rc != 0)
        return rc;
    f->captures++;
    rc = preview ? cam->ops->preview(cam, &frame, err) :
                   cam->ops->capture(cam, &frame, err);
    if (rc != 0) {
        err_prefix(err, "camera %s", cam->model);
        return rc;
    }
    pv_bin = frame->w > 0 && frame->w < cam->frame_w ?
             cam->frame_w / frame->w : 1;
    *metric = focus_sharpness(frame, bin / pv_bin > 1 ? bin / pv_bin : 1);
    img_free(frame);
    log_debug("focus", "probe z_um=%.2f bin=%d metric=%.5g", z_um, bin,
              *metric);
    return 0;
}

int
acq__focus_sweep(struct acq__focuser *f, double z_lo_um, double z_hi_um,
                 int n, double *z_peak, struct ss_err *err)
{
    const struct stage_limits *lim = &f->m->stage->limits;
    double *z = calloc((size_t)n, sizeof(double));
    double *m = calloc((size_t)n, sizeof(double));
    struct af_params ap;
    int k, rc = 0;

    af_params_default(&ap);
    if (z == NULL || m == NULL)
        rc = err_set(err, -ENOMEM, "focus sweep: no memory");
    z_lo_um = fmax(z_lo_um, lim->min_um[2]);
    z_hi_um = fmin(z_hi_um, lim->max_um[2]);
    for (k = 0; k < n && rc == 0; k++) {
        z[k] = n > 1 ? z_lo_um + (z_hi_um - z_lo_um) * k / (n - 1) : z_lo_um;
        rc = focus_probe(f, z[k], n > 1 ? (z_hi_um - z_lo_um) / (n - 1) : 1,
                         &m[k], err);
    }
    if (rc == 0)
        rc = focus_sweep_peak(z, m, n, ap.min_contrast, z_peak, err);
    free(z);
    free(m);
    return rc;
}

int
acq__autofocus(struct acq__focuser *f, double z_start_um, double range_um,
               int coarse_n, struct af_result *r, struct ss_err *err)
{
    const struct stage_limits *lim = &f->m->stage->limits;
    struct af_params ap;

    af_params_default(&ap);
    ap.z_min_um = lim->min_um[2];
    ap.z_max_um = lim->max_um[2];
    ap.range_um = range_um;
    ap.coarse_n = coarse_n;
    ap.fine_step_um = 4.0 * f->m->pixel_um;
    return focus_search(&ap, z_start_um, focus_probe, f, r, err);
}
