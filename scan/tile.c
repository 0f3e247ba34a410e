/* SPDX-License-Identifier: MIT */
/*
 * Capturing planned tiles: move, expose, check exposure, flat-field,
 * judge focus, refocus and re-take when blurred.
 *
 * Focus quality: q = R / R_ref with R = S(bin 1) / S(bin 4), the ratio of
 * the Brenner sharpness of a raw frame at full resolution to that of the
 * same frame binned 4 × 4 (imaging/focus.h).  Defocus takes detail from
 * the finest scale first, so R falls with blur while the amount and kind
 * of tissue largely cancel out (on the simulated 20x H&E phantom: q 0.90
 * to 1.08 in focus, 0.72 to 0.84 at 0.5 to 0.8 µm off, 0.60 to 0.74 at
 * 1 µm, the depth of field).  R_ref is the median R of
 * the focus points, each measured at its best focus on a frame taken
 * like a tile.  Pixel noise raises R, so glass-only frames never look
 * blurred.  A tile with q < sharp_rel_min is refocused over
 * ± refocus_range_um around the map's z and taken again.
 *
 * Readout overlap: with a camera that has the split capture
 * (drivers/camera.h) and tiles at the map's z, the approach to the next
 * tile runs as soon as a frame's exposure has ended, while the sensor
 * reads out; the next tile's call then finds the stage there, settled,
 * and starts with its exposure.  The approach is the same one-sided move
 * the next tile would make itself, so its frame does not change.  A
 * tile whose frame then needs a re-take is approached again; a failed
 * approach is the next tile's error, as it would have been without the
 * overlap.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "imaging/exposure.h"
#include "imaging/flatfield.h"
#include "scan/acq_int.h"

enum cam_mode { CAM_UNKNOWN, CAM_TILE, CAM_FOCUS };

struct acq_session {
    struct microscope *m;
    const struct acq_profile *p;
    const struct acq_calib *calib;
    const struct acq_focus_map *fm;
    struct acq_options o;
    struct motion mo;
    struct img *gain;               /* white / (F - D), NULL: no calib */
    enum cam_mode mode;
    double q_ref;                   /* R of the focus points, 0: none */
    struct exp_limits lim;
    /* The approach made during the last readout (see the top). */
    bool ahead;                     /* one is on record */
    double ahead_pos[3];            /* its target */
    double ahead_at[3];             /* the settled reading */
    long ahead_moves;               /* s->mo.moves right after it */
    int ahead_rc;                   /* its result */
    struct ss_err ahead_err;
};

double
acq__quality(const struct img *frame)
{
    double s4 = focus_sharpness(frame, 4);

    return s4 > 0 ? focus_sharpness(frame, 1) / s4 : 0;
}

/* The reference quality: the median over focus points that carry one.
 * LIMIT: one reference per slide; tissue that changes character (fat next
 * to dense tumour) spreads q in focus, which the 0.75 threshold absorbs
 * only down to about 0.9. */
static double
reference_quality(const struct acq_focus_map *fm)
{
    double *v, q = 0;
    int i, n = 0;

    if (fm == NULL || fm->npoints == 0)
        return 0;
    v = calloc((size_t)fm->npoints, sizeof(*v));
    if (v == NULL)
        return 0;
    for (i = 0; i < fm->npoints; i++)
        if (fm->points[i].ok && fm->points[i].score > 0)
            v[n++] = fm->points[i].score;
    if (n > 0)
        q = acq__median(v, n);
    free(v);
    return q;
}

void
acq_session_free(struct acq_session *s)
{
    if (s == NULL)
        return;
    img_free(s->gain);
    free(s);
}

int
acq_session_open(struct microscope *m, const struct acq_profile *p,
                 const struct acq_calib *calib,
                 const struct acq_focus_map *fm,
                 const struct acq_options *o, struct acq_session **out,
                 struct ss_err *err)
{
    struct acq_session *s;
    struct motion_cfg mc;

    *out = NULL;
    if (calib != NULL && !acq_calib_matches(calib, p))
        return err_set(err, SS_ECONFIG, "calibration for %s %s %.0f ms "
                       "does not fit profile %s %s %.0f ms", calib->stain,
                       calib->objective, calib->exposure_ms, p->stain,
                       p->objective, p->exposure_ms);
    if (calib != NULL && (calib->flat->w != m->cam->frame_w ||
                          calib->flat->h != m->cam->frame_h))
        return err_set(err, SS_ECONFIG, "calibration frames are %dx%d, "
                       "camera %s gives %dx%d", calib->flat->w,
                       calib->flat->h, m->cam->model, m->cam->frame_w,
                       m->cam->frame_h);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(err, -ENOMEM, "scan session: no memory");
    s->m = m;
    s->p = p;
    s->calib = calib;
    s->fm = fm;
    s->o = *o;
    acq__motion_cfg(o, &mc);
    motion_init(&s->mo, m->stage, m->clock, &mc);
    exp_limits_default(&s->lim);
    s->q_ref = reference_quality(fm);
    if (calib != NULL) {
        s->gain = ff_gain_new(calib->dark, calib->flat, o->white);
        if (s->gain == NULL) {
            free(s);
            return err_set(err, -ENOMEM, "scan session: no memory");
        }
    }
    *out = s;
    return 0;
}

struct acq_session *
acq_session_new(struct microscope *m, const struct acq_profile *p,
                const struct acq_calib *calib, const struct acq_focus_map *fm,
                const struct acq_options *o)
{
    struct acq_session *s;
    struct ss_err e;

    if (acq_session_open(m, p, calib, fm, o, &s, &e) != 0) {
        log_error("scan", "session: %s", e.msg);
        return NULL;
    }
    return s;
}

void
acq_tile_result_clear(struct acq_tile_result *r)
{
    img_free(r->frame);
    memset(r, 0, sizeof(*r));
}

static int
use_mode(struct acq_session *s, enum cam_mode mode, struct ss_err *err)
{
    int rc;

    if (s->mode == mode)
        return 0;
    rc = acq__set_camera(s->m, s->p, &s->o, mode == CAM_FOCUS, err);
    s->mode = rc == 0 ? mode : CAM_UNKNOWN;
    return rc;
}

/* Below this fraction of tissue in a frame, pixel noise dominates the
 * focus quality, so the frame is not judged on it.
 * LIMIT: tiles with less tissue than this are never re-taken or flagged
 * blurred. */
#define QC_MIN_TISSUE 0.05

/* Exposure flags of a raw frame, logged when set. */
static int
exposure_flags(struct acq_session *s, const struct img *raw,
               const struct acq_tile *t, struct acq_tile_result *r)
{
    const struct acq_calib *c = s->calib;
    struct exp_stats st;
    int flags = 0;

    exposure_check(raw, c ? c->dark : NULL, c ? c->flat : NULL, &s->lim,
                   &st);
    r->sat_frac = st.sat_frac;
    r->tissue_frac = st.tissue_frac;
    if (st.flags & EXP_SATURATED) {
        flags |= ACQ_TILE_SATURATED;
        log_warn("scan", "saturated tile=%d sat_tissue_pct=%.2f "
                 "tissue_pct=%.1f", t->index, 100 * st.sat_frac,
                 100 * st.tissue_frac);
    }
    if (st.flags & EXP_DARK) {
        flags |= ACQ_TILE_DARK;
        log_warn("scan", "too dark tile=%d bright_transmittance=%.3f",
                 t->index, st.bright_t);
    }
    return flags;
}

/* Approaches pos, unless the approach made during the last readout went
 * there and the stage has not moved since: then its reading (or its
 * error) is taken over. */
static int
approach(struct acq_session *s, const double pos[3], double at[3],
         struct ss_err *err)
{
    bool there = s->ahead && s->mo.moves == s->ahead_moves &&
                 memcmp(pos, s->ahead_pos, sizeof(s->ahead_pos)) == 0;

    s->ahead = false;
    if (!there)
        return motion_approach(&s->mo, pos, at, err);
    if (s->ahead_rc != 0) {
        if (err != NULL)
            *err = s->ahead_err;
        return s->ahead_rc;
    }
    memcpy(at, s->ahead_at, sizeof(s->ahead_at));
    return 0;
}

/* The approach to the next tile while the sensor reads out. */
static void
approach_ahead(struct acq_session *s, const double next[3])
{
    s->ahead_rc = motion_approach(&s->mo, next, s->ahead_at, &s->ahead_err);
    if (s->ahead_rc != 0)
        log_debug("scan", "approach ahead failed: %s", s->ahead_err.msg);
    memcpy(s->ahead_pos, next, sizeof(s->ahead_pos));
    s->ahead_moves = s->mo.moves;
    s->ahead = true;
}

/* One exposure at pos into r (frame, position, exposure flags); *q is
 * the frame's focus quality R.  With next (and a camera that overlaps its
 * readout) the stage approaches next during the readout.
 * LIMIT: a camera without the split capture (the libgphoto2 driver)
 * returns only after the readout, so there the move to the next tile
 * cannot overlap it. */
static int
take(struct acq_session *s, const struct acq_tile *t, const double pos[3],
     const double *next, struct acq_tile_result *r, double *q,
     struct ss_err *err)
{
    struct camera *cam = s->m->cam;
    struct img *raw = NULL, *frame = NULL;
    double at[3];
    int rc;

    rc = use_mode(s, CAM_TILE, err);
    if (rc == 0)
        rc = approach(s, pos, at, err);
    if (rc == 0 && (rc = camera_capture_begin(cam, err)) != 0)
        err_prefix(err, "camera %s", cam->model);
    if (rc == 0 && next != NULL && camera_overlaps_readout(cam))
        approach_ahead(s, next);
    if (rc == 0 && (rc = camera_capture_end(cam, &raw, err)) != 0)
        err_prefix(err, "camera %s", cam->model);
    if (rc == 0 && s->gain != NULL)
        rc = ff_apply(raw, s->calib->dark, s->gain, &frame, err);
    if (rc != 0) {
        img_free(raw);
        return rc;
    }
    r->flags = (r->flags & ACQ_TILE_LOWCONF) |
               exposure_flags(s, raw, t, r);
    *q = acq__quality(raw);
    if (frame == NULL) {
        frame = raw;
        raw = NULL;
    }
    img_free(raw);
    img_free(r->frame);
    r->frame = frame;
    r->x_um = at[0];
    r->y_um = at[1];
    r->z_um = at[2];
    return 0;
}

/* Autofocus around the predicted z at the tile: 0 with *z, SS_ENOFOCUS,
 * or a device error. */
static int
refocus(struct acq_session *s, const struct acq_tile *t, double z_pred,
        double *z, struct acq_tile_result *r, struct ss_err *err)
{
    struct acq__focuser f = { s->m, &s->mo, &s->o, t->x_um, t->y_um, 0 };
    struct af_result ar;
    int rc;

    rc = use_mode(s, CAM_FOCUS, err);
    if (rc == 0)
        rc = acq__autofocus(&f, z_pred, s->o.refocus_range_um, 3, &ar, err);
    r->focus_captures += f.captures;
    if (rc == 0)
        *z = ar.z_um;
    return rc;
}

static double
clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The map's z at the tile's centre, within the z travel. */
static double
predicted_z(const struct acq_session *s, const struct acq_plan *plan,
            const struct acq_tile *t)
{
    const struct stage_limits *l = &s->m->stage->limits;
    double z = s->o.focus_z_um;

    if (s->fm != NULL)
        z = acq_focus_map_z(s->fm, t->x_um + 0.5 * plan->frame_w *
                            plan->pixel_um, t->y_um + 0.5 * plan->frame_h *
                            plan->pixel_um);
    return clamp(z, l->min_um[2], l->max_um[2]);
}

/* True when one of the map's points was meant for tile t (it lies within
 * a quarter frame of t's centre: points are made at frame centres) and
 * gave no z: no focus there, a device fault, or an outlier the fit left
 * out.  The tile's z is then the surface's guess from the other points,
 * never measured where it is taken. */
static bool
own_point_failed(const struct acq_session *s, const struct acq_plan *plan,
                 const struct acq_tile *t)
{
    double fw = plan->frame_w * plan->pixel_um;
    double fh = plan->frame_h * plan->pixel_um;
    double cx = t->x_um + 0.5 * fw, cy = t->y_um + 0.5 * fh;
    int i;

    if (s->fm == NULL)
        return false;
    for (i = 0; i < s->fm->npoints; i++) {
        const struct acq_focus_point *q = &s->fm->points[i];
        if (!q->ok && fabs(q->x_um - cx) <= 0.25 * fw &&
            fabs(q->y_um - cy) <= 0.25 * fh)
            return true;
    }
    return false;
}

/* Refocuses and re-takes while the tile looks blurred, within budget.  A
 * refocus that finds focus measures the tile's z, so a tile flagged for
 * a guessed z loses ACQ_TILE_LOWCONF with it. */
static int
retake_blurred(struct acq_session *s, const struct acq_tile *t,
               const double *next, struct acq_tile_result *r, double q,
               struct ss_err *err)
{
    double pos[3] = { t->x_um, t->y_um, r->z_pred_um }, z;
    struct ss_err e;
    int rc;

    while (r->quality < s->o.sharp_rel_min &&
           r->retakes < s->o.max_retakes &&
           r->tissue_frac >= QC_MIN_TISSUE) {
        rc = refocus(s, t, r->z_pred_um, &z, r, &e);
        if (rc == SS_ENOFOCUS) {
            r->flags |= ACQ_TILE_LOWCONF;
            log_debug("scan", "refocus failed tile=%d: %s", t->index,
                      e.msg);
            break;
        }
        if (rc != 0) {
            err_set(err, rc, "refocus: %s", e.msg);
            return rc;
        }
        pos[2] = z;
        r->flags &= ~ACQ_TILE_LOWCONF;
        r->retakes++;
        rc = take(s, t, pos, next, r, &q, err);
        if (rc != 0)
            return rc;
        r->quality = q / s->q_ref;
    }
    if (r->quality < s->o.sharp_rel_min && r->tissue_frac >= QC_MIN_TISSUE)
        r->flags |= ACQ_TILE_BLURRED;
    return 0;
}

/* Per-tile focus (ACQ_FOCUS_EACH, ACQ_FOCUS_SWEEP) around the predicted
 * z; a tile with no focus keeps the prediction and is flagged. */
static int
tile_focus(struct acq_session *s, const struct acq_tile *t,
           struct acq_tile_result *r, double *z, struct ss_err *err)
{
    struct acq__focuser f = { s->m, &s->mo, &s->o, t->x_um, t->y_um, 0 };
    double range = s->fm != NULL ? s->o.refocus_range_um :
                   s->o.focus_range_um;
    struct af_result ar;
    struct ss_err e;
    int rc;

    rc = use_mode(s, CAM_FOCUS, err);
    if (rc != 0)
        return rc;
    if (s->o.focus_mode == ACQ_FOCUS_SWEEP)
        rc = acq__focus_sweep(&f, r->z_pred_um - range, r->z_pred_um +
                              range, 41, z, &e);
    else
        rc = acq__autofocus(&f, r->z_pred_um, range, 5, &ar, &e);
    if (rc == 0 && s->o.focus_mode != ACQ_FOCUS_SWEEP)
        *z = ar.z_um;
    r->focus_captures += f.captures;
    if (rc == SS_ENOFOCUS) {
        r->flags |= ACQ_TILE_LOWCONF;
        log_info("scan", "no focus tile=%d, using z_um=%.2f: %s", t->index,
                 *z, e.msg);
        return 0;
    }
    if (rc != 0)
        err_set(err, rc, "%s", e.msg);
    return rc;
}

int
acq_tile_capture(struct acq_session *s, const struct acq_plan *plan,
                 const struct acq_tile *t, struct acq_tile_result *r,
                 struct ss_err *err)
{
    return acq_tile_capture_next(s, plan, t, NULL, r, err);
}

/* LIMIT: with per-tile autofocus or the z sweep the stage does not go
 * ahead: the next tile's focus frames start after the readout. */
int
acq_tile_capture_next(struct acq_session *s, const struct acq_plan *plan,
                      const struct acq_tile *t, const struct acq_tile *next,
                      struct acq_tile_result *r, struct ss_err *err)
{
    double pos[3] = { t->x_um, t->y_um, 0 }, q = 0, ahead[3], *nx = NULL;
    int rc = 0;

    if (next != NULL && s->o.focus_mode == ACQ_FOCUS_MAP) {
        ahead[0] = next->x_um;
        ahead[1] = next->y_um;
        ahead[2] = predicted_z(s, plan, next);
        nx = ahead;
    }
    memset(r, 0, sizeof(*r));
    r->z_pred_um = pos[2] = predicted_z(s, plan, t);
    if (s->fm == NULL || (s->fm->surf.nused == 0 && s->fm->npoints == 0))
        r->flags |= ACQ_TILE_LOWCONF;
    if (s->o.focus_mode == ACQ_FOCUS_MAP && own_point_failed(s, plan, t)) {
        r->flags |= ACQ_TILE_LOWCONF;
        log_info("scan", "focus guessed tile=%d z_um=%.2f: its focus point "
                 "gave no z, the map's surface predicts it", t->index,
                 pos[2]);
    }
    if (s->o.focus_mode != ACQ_FOCUS_MAP) {
        r->flags &= ~ACQ_TILE_LOWCONF;
        rc = tile_focus(s, t, r, &pos[2], err);
    }
    if (rc == 0)
        rc = take(s, t, pos, nx, r, &q, err);
    r->quality = s->q_ref > 0 ? q / s->q_ref : 1.0;
    if (rc == 0 && s->q_ref > 0)
        rc = retake_blurred(s, t, nx, r, q, err);
    if (rc != 0) {
        acq_tile_result_clear(r);
        err_prefix(err, "tile %d (row %d, col %d)", t->index, t->row,
                   t->col);
        return rc;
    }
    r->sharpness = focus_sharpness(r->frame, 1);
    log_debug("scan", "tile=%d x_um=%.1f y_um=%.1f z_um=%.2f quality=%.2f "
              "retakes=%d flags=%d", t->index, r->x_um, r->y_um, r->z_um,
              r->quality, r->retakes, r->flags);
    return 0;
}
