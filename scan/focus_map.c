/* SPDX-License-Identifier: MIT */
/*
 * The focus map of a scan: where to autofocus (points spread over the
 * tissue), the autofocus runs themselves, and the surface through them.
 *
 * Points: the plan's bounding grid is cut into k × k blocks (k = 2 below
 * 9 tiles, 3 below 500 (a 15 × 15 mm section at 20x has about 370), then
 * 4: a quadratic surface needs 8 points) and each block contributes one
 * tile with plenty of tissue, as far out as possible (block_best()).  The
 * first point searches focus_range_um around the nominal focal plane; later
 * ones start from the surface fitted so far and search half that range
 * (five coarse frames), and once six points have focus, the surface is
 * good enough to search only refocus_range_um (three coarse frames).
 *
 * Device faults at a point follow the scan's fault policy as a tile's
 * would (focus_point()): one more try, then the point is skipped and the
 * surface fitted from the rest, so one hung capture does not stop the
 * scan.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/guard.h"
#include "scan/acq_int.h"

/* A point further than this from the surface of the others is an
 * autofocus that locked onto dust, a bubble or a fold. */
#define FOCUS_OUTLIER_UM 2.0

void
acq_focus_map_free(struct acq_focus_map *fm)
{
    if (fm == NULL)
        return;
    free(fm->points);
    free(fm);
}

int
acq_focus_map_fit(struct acq_focus_map *fm, struct ss_err *err)
{
    int n = fm->npoints, i, rc;
    double *x = calloc((size_t)n + 1, sizeof(double));
    double *y = calloc((size_t)n + 1, sizeof(double));
    double *z = calloc((size_t)n + 1, sizeof(double));
    bool *use = calloc((size_t)n + 1, sizeof(bool));

    if (x == NULL || y == NULL || z == NULL || use == NULL) {
        rc = err_set(err, -ENOMEM, "focus map: no memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        x[i] = fm->points[i].x_um;
        y[i] = fm->points[i].y_um;
        z[i] = fm->points[i].z_um;
        use[i] = fm->points[i].ok;
    }
    rc = fmap_fit(x, y, z, use, n, FMAP_TPS, FOCUS_OUTLIER_UM, &fm->surf,
                  err);
    if (rc != 0)
        goto out;
    for (i = 0; i < n; i++)
        if (fm->points[i].ok && !use[i]) {
            fm->points[i].ok = false;
            log_warn("focus", "outlier point=%d x_um=%.0f y_um=%.0f "
                     "z_um=%.2f", i, x[i], y[i], z[i]);
        }
    fm->model = fm->surf.model;
    fmap_poly_raw(&fm->surf, fm->coef);
    fm->rms_um = fm->surf.rms_um;
out:
    free(x);
    free(y);
    free(z);
    free(use);
    return rc;
}

double
acq_focus_map_z(const struct acq_focus_map *fm, double x_um, double y_um)
{
    if (fm->surf.nused > 0)
        return fmap_eval(&fm->surf, x_um, y_um);
    return fmap_poly_raw_eval(fm->coef, x_um, y_um);
}

/* Blocks per side for n tiles. */
static int
blocks_per_side(int ntiles, int wanted)
{
    if (wanted > 0)
        return (int)ceil(sqrt((double)wanted));
    if (ntiles < 9)
        return 2;
    return ntiles < 500 ? 3 : 4;
}

/* Index of the tile to focus on in block (bi, bj) of k × k over the
 * plan's rows and columns, or -1 when the block has no tile.  Among the
 * tiles with at least half the block's best tissue fraction, the one
 * farthest from the plan's centre wins (the one nearest it in the centre
 * block): points spread to the edges fix the surface's curvature, and
 * the surface is not extrapolated far beyond them. */
static int
block_best(const struct acq_plan *plan, int k, int bi, int bj)
{
    double r0 = (double)plan->rows * bi / k, r1 = (double)plan->rows *
                (bi + 1) / k;
    double c0 = (double)plan->cols * bj / k, c1 = (double)plan->cols *
                (bj + 1) / k;
    double rc = 0.5 * plan->rows - 0.5, cc = 0.5 * plan->cols - 0.5;
    bool centre = rc >= r0 - 0.5 && rc < r1 - 0.5 && cc >= c0 - 0.5 &&
                  cc < c1 - 0.5;
    double top = -1, best_d = -INFINITY, d;
    int i, best = -1;

    for (i = 0; i < plan->ntiles; i++) {
        const struct acq_tile *t = &plan->tiles[i];
        if (t->row >= r0 && t->row < r1 && t->col >= c0 && t->col < c1)
            top = fmax(top, t->tissue_frac);
    }
    for (i = 0; i < plan->ntiles; i++) {
        const struct acq_tile *t = &plan->tiles[i];
        if (t->row < r0 || t->row >= r1 || t->col < c0 || t->col >= c1 ||
            t->tissue_frac < 0.5 * top)
            continue;
        d = hypot((t->row - rc) * plan->step_y_um, (t->col - cc) *
                  plan->step_x_um);
        d = centre ? -d : d;
        if (d > best_d + 1e-9) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

/* Chooses the tiles to focus on, in serpentine block order.
 * LIMIT: tissue in one thin strip fills few blocks, so the map may get
 * fewer than 8 points and a plane instead of a quadratic. */
static int
choose_points(const struct acq_plan *plan, int wanted, int *idx)
{
    int k = blocks_per_side(plan->ntiles, wanted), n = 0, bi, bj, t;

    if (plan->ntiles <= 4 && wanted <= 0) {
        for (n = 0; n < plan->ntiles; n++)
            idx[n] = n;
        return n;
    }
    for (bi = 0; bi < k; bi++)
        for (bj = 0; bj < k; bj++) {
            t = block_best(plan, k, bi, bi % 2 ? k - 1 - bj : bj);
            if (t >= 0)
                idx[n++] = t;
        }
    return n;
}

/* Where the next autofocus starts: on the surface through the points
 * found so far, or at the nominal plane before the first. */
static double
start_z(const struct acq_focus_map *fm, double x, double y, double nominal,
        bool *have)
{
    struct acq_focus_map tmp = *fm;
    int i;

    *have = false;
    for (i = 0; i < fm->npoints; i++)
        *have = *have || fm->points[i].ok;
    if (!*have)
        return nominal;
    tmp.points = calloc((size_t)fm->npoints, sizeof(*tmp.points));
    if (tmp.points == NULL)
        return nominal;
    memcpy(tmp.points, fm->points, fm->npoints * sizeof(*tmp.points));
    if (acq_focus_map_fit(&tmp, NULL) == 0)
        nominal = acq_focus_map_z(&tmp, x, y);
    free(tmp.points);
    return nominal;
}

/* The reference focus quality at a point: a frame taken like a tile at
 * the best focus found. */
static int
point_quality(struct microscope *m, const struct acq_profile *p,
              struct motion *mo, const struct acq_options *o,
              const double pos[3], double *q, struct ss_err *err)
{
    struct img *frame = NULL;
    int rc;

    rc = acq__set_camera(m, p, o, false, err);
    if (rc == 0)
        rc = motion_move_to(mo, pos, NULL, err);
    if (rc == 0 && (rc = m->cam->ops->capture(m->cam, &frame, err)) != 0)
        err_prefix(err, "camera %s", m->cam->model);
    if (rc == 0)
        rc = acq__set_camera(m, p, o, true, err);
    if (rc == 0)
        *q = acq__quality(frame);
    img_free(frame);
    return rc;
}

static int
ok_points(const struct acq_focus_map *fm)
{
    int i, n = 0;

    for (i = 0; i < fm->npoints; i++)
        n += fm->points[i].ok;
    return n;
}

/* One try of autofocus at a planned tile, filling point q; a point
 * without focus is kept with ok = false (0), a device failure returns
 * its code.  A try after a fault (again) sets the camera up first. */
static int
focus_try(struct microscope *m, const struct acq_profile *p,
          struct motion *mo, const struct acq_options *o,
          const struct acq_tile *t, struct acq_focus_map *fm,
          struct acq_focus_point *q, bool again, struct ss_err *err)
{
    struct acq__focuser f = { m, mo, o, t->x_um, t->y_um, 0 };
    double fov_w = m->cam->frame_w * m->pixel_um;
    double fov_h = m->cam->frame_h * m->pixel_um;
    struct af_result r;
    struct ss_err e;
    bool have;
    int rc;

    memset(q, 0, sizeof(*q));
    q->x_um = t->x_um + 0.5 * fov_w;
    q->y_um = t->y_um + 0.5 * fov_h;
    q->z_um = start_z(fm, q->x_um, q->y_um, o->focus_z_um, &have);
    /* A try after a fault may find a rebuilt camera: set it again. */
    rc = again ? acq__set_camera(m, p, o, true, &e) : 0;
    if (rc == 0 && ok_points(fm) >= 6)
        rc = acq__autofocus(&f, q->z_um, o->refocus_range_um, 3, &r, &e);
    else if (rc == 0)
        rc = acq__autofocus(&f, q->z_um, have ? 0.5 * o->focus_range_um :
                            o->focus_range_um, 5, &r, &e);
    fm->captures += f.captures;
    if (rc == SS_ENOFOCUS) {
        log_warn("focus", "no focus tile=%d x_um=%.0f y_um=%.0f: %s",
                 t->index, q->x_um, q->y_um, e.msg);
        return 0;
    }
    if (rc != 0)
        return err_set(err, rc, "focus point at tile %d: %s", t->index,
                       e.msg);
    q->z_um = r.z_um;
    rc = point_quality(m, p, mo, o, (double[3]){ t->x_um, t->y_um, r.z_um },
                       &q->score, err);
    fm->captures++;
    if (rc != 0)
        return err_prefix(err, "focus point at tile %d", t->index);
    q->ok = true;
    log_debug("focus", "point tile=%d z_um=%.2f captures=%d contrast=%.2f",
              t->index, r.z_um, r.captures, r.contrast);
    return 0;
}

/* Autofocus at one planned tile under the scan's fault policy
 * (drivers/guard.h), a focus point counting as a tile: a device fault
 * (missed deadline, device error) is tried once more, then the point is
 * skipped (ok = false) and the map is fitted from the others; more
 * points failed in a row than GUARD_FAILED_IN_ROW_MAX, a stalled stage
 * after its retry, a busy, held or unplugged device, a full disk end the
 * build with the fault, for the caller's policy.  *failed_in_row and
 * *skipped count the points skipped for faults; *last keeps the last
 * fault, for when no point is left. */
static int
focus_point(struct microscope *m, const struct acq_profile *p,
            struct motion *mo, const struct acq_options *o,
            const struct acq_tile *t, struct acq_focus_map *fm,
            int *failed_in_row, int *skipped, struct ss_err *last)
{
    struct acq_focus_point *q = &fm->points[fm->npoints];
    struct guard_fault f;
    enum guard_action a;
    int rc;

    for (f.attempt = 0;; f.attempt++) {
        rc = focus_try(m, p, mo, o, t, fm, q, f.attempt > 0, last);
        if (rc == 0) {
            fm->npoints++;
            *failed_in_row = 0;
            return 0;
        }
        f.code = rc;
        f.failed_in_row = *failed_in_row;
        f.in_tile = true;
        a = guard_fault_action(&f);
        log_warn("focus", "point fault tile=%d attempt=%d action=%s "
                 "cause=\"%s\"", t->index, f.attempt,
                 guard_action_name(a), last->msg);
        if (a == GUARD_ACT_FAIL_TILE)
            break;
        if (a != GUARD_ACT_RETRY_TILE)
            return rc;
    }
    q->ok = false;
    fm->npoints++;
    (*failed_in_row)++;
    (*skipped)++;
    return 0;
}

int
acq_focus_map_build(struct microscope *m, const struct acq_profile *p,
                    const struct acq_plan *plan, const struct acq_options *o,
                    struct acq_focus_map **out, struct ss_err *err)
{
    struct acq_focus_map *fm = calloc(1, sizeof(*fm));
    int *idx = calloc((size_t)plan->ntiles + 1, sizeof(int)), n, i, rc = 0;
    int in_row = 0, skipped = 0;
    struct ss_err last;
    struct motion_cfg mc;
    struct motion mo;

    *out = NULL;
    n = idx != NULL ? choose_points(plan, o->focus_points, idx) : 0;
    if (fm != NULL)
        fm->points = calloc((size_t)n + 1, sizeof(*fm->points));
    if (fm == NULL || idx == NULL || fm->points == NULL) {
        free(idx);
        acq_focus_map_free(fm);
        return err_set(err, -ENOMEM, "focus map: no memory");
    }
    acq__motion_cfg(o, &mc);
    motion_init(&mo, m->stage, m->clock, &mc);
    err_clear(&last);
    rc = acq__set_camera(m, p, o, true, &last);
    for (i = 0; i < n && rc == 0; i++)
        rc = focus_point(m, p, &mo, o, &plan->tiles[idx[i]], fm, &in_row,
                         &skipped, &last);
    if (rc != 0)
        *err = last;
    /* Every point lost to faults: the device decides, not the slide. */
    if (rc == 0 && skipped > 0 && ok_points(fm) == 0)
        rc = err_set(err, last.code, "%s (all %d focus points failed)",
                     last.msg, skipped);
    if (rc == 0)
        rc = acq__set_camera(m, p, o, false, err);
    if (rc != 0)
        err_prefix(err, "focus map");
    else
        rc = acq_focus_map_fit(fm, err);  /* its errors name the map */
    free(idx);
    if (rc != 0) {
        acq_focus_map_free(fm);
        return rc;
    }
    log_notice("focus", "map model=%s span=%s points=%d used=%d rms_um=%.3f "
               "loo_um=%.3f captures=%d skipped_for_faults=%d",
               fmap_model_name(fm->model), fm->surf.dims == 2 ? "area" :
               fm->surf.dims == 1 ? "line" : "spot", fm->npoints,
               fm->surf.nused, fm->rms_um, fm->surf.loo_rms_um,
               fm->captures, skipped);
    *out = fm;
    return 0;
}
