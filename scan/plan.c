/* SPDX-License-Identifier: MIT */
/*
 * The tile plan: a regular grid of frames with overlap, laid over the
 * tissue found on the overview (or over an explicit region), keeping the
 * cells that hold tissue, in serpentine order.
 *
 * The mask is grown first by ACQ_PLAN_MARGIN_UM plus ACQ_PLAN_OV_PX
 * overview pixels (scan/acquire.h): a tissue edge is known only to the
 * overview's pixel, partly covered pixels read paler than the tissue,
 * and faint edges fade under the threshold (at most 56 µm on the
 * simulator's phantoms at 10 µm/px, tests/unit/test_tissue_plan.c).
 *
 * Each cell owns a "core": the step × step part of its frame nearest the
 * grid origin, the last row and column owning their whole frame.  The
 * cores tile the grid without gaps, so keeping every cell whose core
 * meets the (grown) tissue mask covers all tissue, while cells that see
 * tissue only in an overlap shared with a kept neighbour are skipped.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "imaging/tissue.h"
#include "scan/acq_int.h"


void
acq_plan_free(struct acq_plan *p)
{
    if (p == NULL)
        return;
    free(p->tiles);
    free(p);
}

/* Lays a grid of n frames of size fov, step apart, centred on [lo, hi]
 * and kept inside the travel [tmin, tmax]; returns the origin. */
static int
grid_axis(double lo, double hi, double fov, double step, double tmin,
          double tmax, int *n, double *origin)
{
    double span;

    *n = hi - lo <= fov ? 1 : (int)ceil((hi - lo - fov) / step - 1e-9) + 1;
    span = fov + (*n - 1) * step;
    *origin = 0.5 * (lo + hi) - 0.5 * span;
    if (*origin + (*n - 1) * step > tmax)
        *origin = tmax - (*n - 1) * step;
    if (*origin < tmin)
        *origin = tmin;
    return *origin + (*n - 1) * step <= tmax + 1e-6 ? 0 : -ERANGE;
}

static int
plan_new(const struct acq_frame_geo *fg, double overlap, double x0,
         double y0, double x1, double y1, struct acq_plan **out,
         struct ss_err *err)
{
    struct acq_plan *p = calloc(1, sizeof(*p));
    double fw = fg->frame_w * fg->pixel_um, fh = fg->frame_h * fg->pixel_um;
    const struct stage_limits *l = &fg->limits;

    *out = NULL;
    if (p == NULL)
        return err_set(err, -ENOMEM, "plan: no memory");
    p->frame_w = fg->frame_w;
    p->frame_h = fg->frame_h;
    p->pixel_um = fg->pixel_um;
    p->step_x_um = fw * (1.0 - overlap);
    p->step_y_um = fh * (1.0 - overlap);
    if (grid_axis(x0, x1, fw, p->step_x_um, l->min_um[0], l->max_um[0],
                  &p->cols, &p->origin_x_um) != 0 ||
        grid_axis(y0, y1, fh, p->step_y_um, l->min_um[1], l->max_um[1],
                  &p->rows, &p->origin_y_um) != 0) {
        free(p);
        return err_set(err, -ERANGE, "plan: region (%.0f, %.0f)-(%.0f, "
                       "%.0f) um does not fit the stage travel", x0, y0,
                       x1, y1);
    }
    p->cells_total = p->rows * p->cols;
    p->tiles = calloc((size_t)p->cells_total, sizeof(*p->tiles));
    if (p->tiles == NULL) {
        free(p);
        return err_set(err, -ENOMEM, "plan: no memory for the cells");
    }
    *out = p;
    return 0;
}

/* Appends cell (row, col) as the next tile in capture order. */
static void
plan_add(struct acq_plan *p, int row, int col, double tissue_frac)
{
    struct acq_tile *t = &p->tiles[p->ntiles];

    t->index = p->ntiles++;
    t->row = row;
    t->col = col;
    t->x_um = p->origin_x_um + col * p->step_x_um;
    t->y_um = p->origin_y_um + row * p->step_y_um;
    t->tissue_frac = tissue_frac;
}

/* Column of the k-th cell of a row in serpentine order. */
static int
serpentine_col(const struct acq_plan *p, int row, int k)
{
    return row % 2 == 0 ? k : p->cols - 1 - k;
}

int
acq_plan_region(double x_um, double y_um, double w_um, double h_um,
                const struct acq_frame_geo *fg, double overlap,
                struct acq_plan **plan, struct ss_err *err)
{
    struct acq_plan *p;
    int r, k, rc;

    *plan = NULL;
    if (!(w_um > 0 && h_um > 0 && overlap >= 0 && overlap < 0.5))
        return err_set(err, -EINVAL, "plan: region %.0f x %.0f um with "
                       "overlap %.2f is not usable", w_um, h_um, overlap);
    rc = plan_new(fg, overlap, x_um, y_um, x_um + w_um, y_um + h_um, &p,
                  err);
    if (rc != 0)
        return rc;
    for (r = 0; r < p->rows; r++)
        for (k = 0; k < p->cols; k++)
            plan_add(p, r, serpentine_col(p, r, k), 0);
    *plan = p;
    return 0;
}

/* Summed-area table of a 0/255 mask: (w + 1) × (h + 1) counts. */
struct sat {
    int w, h;
    long *s;
};

static int
sat_init(struct sat *t, const struct img *mask)
{
    int x, y;

    t->w = mask->w;
    t->h = mask->h;
    t->s = calloc((size_t)(t->w + 1) * (t->h + 1), sizeof(*t->s));
    if (t->s == NULL)
        return -ENOMEM;
    for (y = 0; y < t->h; y++)
        for (x = 0; x < t->w; x++)
            t->s[(size_t)(y + 1) * (t->w + 1) + x + 1] =
                (*img_u8(mask, x, y) != 0) +
                t->s[(size_t)y * (t->w + 1) + x + 1] +
                t->s[(size_t)(y + 1) * (t->w + 1) + x] -
                t->s[(size_t)y * (t->w + 1) + x];
    return 0;
}

/* Set pixels in [x0, x1) × [y0, y1), clipped to the mask. */
static long
sat_sum(const struct sat *t, int x0, int y0, int x1, int y1)
{
    x0 = x0 < 0 ? 0 : x0 > t->w ? t->w : x0;
    x1 = x1 < 0 ? 0 : x1 > t->w ? t->w : x1;
    y0 = y0 < 0 ? 0 : y0 > t->h ? t->h : y0;
    y1 = y1 < 0 ? 0 : y1 > t->h ? t->h : y1;
    if (x1 <= x0 || y1 <= y0)
        return 0;
    return t->s[(size_t)y1 * (t->w + 1) + x1] -
           t->s[(size_t)y0 * (t->w + 1) + x1] -
           t->s[(size_t)y1 * (t->w + 1) + x0] +
           t->s[(size_t)y0 * (t->w + 1) + x0];
}

/* Bounding box of the set pixels, in stage µm; false when empty. */
static bool
mask_bbox(const struct img *mask, const struct ov_geometry *geo,
          double box[4])
{
    int x, y, x0 = mask->w, y0 = mask->h, x1 = -1, y1 = -1;

    for (y = 0; y < mask->h; y++)
        for (x = 0; x < mask->w; x++)
            if (*img_u8(mask, x, y)) {
                x0 = x < x0 ? x : x0;
                x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0;
                y1 = y > y1 ? y : y1;
            }
    if (x1 < 0)
        return false;
    box[0] = geo->origin_x_um + x0 * geo->um_per_px;
    box[1] = geo->origin_y_um + y0 * geo->um_per_px;
    box[2] = geo->origin_x_um + (x1 + 1) * geo->um_per_px;
    box[3] = geo->origin_y_um + (y1 + 1) * geo->um_per_px;
    return true;
}

/* Overview pixel column (or row) of stage coordinate v. */
static int
ov_px(double v, double origin, double um_per_px)
{
    return (int)floor((v - origin) / um_per_px + 0.5);
}

/* The overview pixels [*a, *b) that touch the stage interval [v0, v1):
 * pixel i covers [origin + i u, origin + (i + 1) u). */
static void
ov_span(double v0, double v1, double origin, double um_per_px, int *a,
        int *b)
{
    *a = (int)floor((v0 - origin) / um_per_px + 1e-9);
    *b = (int)ceil((v1 - origin) / um_per_px - 1e-9);
}

/* Keeps the cells whose core meets the grown mask. */
static void
keep_cells(struct acq_plan *p, const struct ov_geometry *geo,
           const struct sat *grown, const struct sat *orig)
{
    double fw = p->frame_w * p->pixel_um, fh = p->frame_h * p->pixel_um;
    double u = geo->um_per_px;
    int r, k, c;

    for (r = 0; r < p->rows; r++)
        for (k = 0; k < p->cols; k++) {
            double x, y, cw, ch;
            long area;
            c = serpentine_col(p, r, k);
            x = p->origin_x_um + c * p->step_x_um;
            y = p->origin_y_um + r * p->step_y_um;
            int x0, x1, y0, y1;
            cw = c == p->cols - 1 ? fw : p->step_x_um;
            ch = r == p->rows - 1 ? fh : p->step_y_um;
            ov_span(x, x + cw, geo->origin_x_um, u, &x0, &x1);
            ov_span(y, y + ch, geo->origin_y_um, u, &y0, &y1);
            if (sat_sum(grown, x0, y0, x1, y1) == 0)
                continue;
            area = sat_sum(orig, ov_px(x, geo->origin_x_um, u),
                           ov_px(y, geo->origin_y_um, u),
                           ov_px(x + fw, geo->origin_x_um, u),
                           ov_px(y + fh, geo->origin_y_um, u));
            plan_add(p, r, c, fmin(1.0, area * u * u / (fw * fh)));
        }
}

/* Tissue of the mask that no planned frame covers, in mm²: pixels
 * wholly outside every frame (a pixel a frame touches counts as seen). */
static double
uncovered_mm2(const struct acq_plan *p, const struct img *mask,
              const struct ov_geometry *geo)
{
    double fw = p->frame_w * p->pixel_um, fh = p->frame_h * p->pixel_um;
    double u = geo->um_per_px;
    uint8_t *seen = calloc((size_t)mask->w * mask->h, 1);
    long left = 0;
    int i, x, y, x0, x1, y0, y1;

    if (seen == NULL)
        return 0;
    for (i = 0; i < p->ntiles; i++) {
        ov_span(p->tiles[i].x_um, p->tiles[i].x_um + fw, geo->origin_x_um,
                u, &x0, &x1);
        ov_span(p->tiles[i].y_um, p->tiles[i].y_um + fh, geo->origin_y_um,
                u, &y0, &y1);
        for (y = y0 < 0 ? 0 : y0; y < y1 && y < mask->h; y++)
            for (x = x0 < 0 ? 0 : x0; x < x1 && x < mask->w; x++)
                seen[(size_t)y * mask->w + x] = 1;
    }
    for (y = 0; y < mask->h; y++)
        for (x = 0; x < mask->w; x++)
            left += *img_u8(mask, x, y) != 0 &&
                    !seen[(size_t)y * mask->w + x];
    free(seen);
    return left * u * u * 1e-6;
}

int
acq_plan_mask(const struct img *mask, const struct ov_geometry *geo,
              const struct acq_frame_geo *fg, double overlap,
              double margin_um, struct acq_plan **plan, struct ss_err *err)
{
    struct img *grown = img_dup(mask);
    struct sat sg = { 0 }, so = { 0 };
    struct acq_plan *p = NULL;
    double box[4];
    int rc;

    *plan = NULL;
    if (grown == NULL)
        return err_set(err, -ENOMEM, "plan: no memory");
    tissue_dilate(grown, (int)ceil(margin_um / geo->um_per_px));
    if (!mask_bbox(grown, geo, box)) {
        img_free(grown);
        return err_set(err, -ENODATA, "plan: no tissue found on the "
                       "overview");
    }
    rc = plan_new(fg, overlap, box[0], box[1], box[2], box[3], &p, err);
    if (rc == 0 && (sat_init(&sg, grown) != 0 || sat_init(&so, mask) != 0))
        rc = err_set(err, -ENOMEM, "plan: no memory");
    if (rc == 0) {
        keep_cells(p, geo, &sg, &so);
        p->tissue_outside_mm2 = uncovered_mm2(p, mask, geo);
    }
    free(sg.s);
    free(so.s);
    img_free(grown);
    if (rc != 0) {
        acq_plan_free(p);
        return rc;
    }
    *plan = p;
    return 0;
}

static void
frame_geo(const struct microscope *m, struct acq_frame_geo *fg)
{
    fg->frame_w = m->cam->frame_w;
    fg->frame_h = m->cam->frame_h;
    fg->pixel_um = m->pixel_um;
    fg->limits = m->stage->limits;
}

static bool
has_region(const struct acq_options *o)
{
    return o->region_w_um > 0 && o->region_h_um > 0;
}

/* Each planned frame's share of the mask, for a plan laid without it. */
static int
tissue_fractions(struct acq_plan *p, const struct img *mask,
                 const struct ov_geometry *geo)
{
    double fw = p->frame_w * p->pixel_um, fh = p->frame_h * p->pixel_um;
    double u = geo->um_per_px;
    struct sat so;
    int i;

    if (sat_init(&so, mask) != 0)
        return -ENOMEM;
    for (i = 0; i < p->ntiles; i++) {
        struct acq_tile *t = &p->tiles[i];
        long area = sat_sum(&so, ov_px(t->x_um, geo->origin_x_um, u),
                            ov_px(t->y_um, geo->origin_y_um, u),
                            ov_px(t->x_um + fw, geo->origin_x_um, u),
                            ov_px(t->y_um + fh, geo->origin_y_um, u));
        t->tissue_frac = fmin(1.0, area * u * u / (fw * fh));
    }
    free(so.s);
    return 0;
}

static bool
plan_has_tissue(const struct acq_plan *p)
{
    int i;

    for (i = 0; i < p->ntiles; i++)
        if (p->tiles[i].tissue_frac > 0)
            return true;
    return false;
}

/* An explicit region over glass only: no frame would find a focus, so
 * the scan fails here, saying so, rather than at the focus map. */
static int
region_empty(const struct acq_options *o, double tissue_mm2,
             struct ss_err *err)
{
    char where[96];

    if (tissue_mm2 > 0)
        snprintf(where, sizeof(where), "the overview shows %.2f mm2 of "
                 "tissue elsewhere on the slide", tissue_mm2);
    else
        snprintf(where, sizeof(where), "the overview shows no tissue on "
                 "the slide at all");
    return err_set(err, -ENODATA, "plan: the region %.0f,%.0f,%.0f,%.0f "
                   "(x,y,w,h in um) holds no tissue the overview could "
                   "find; %s", o->region_x_um, o->region_y_um,
                   o->region_w_um, o->region_h_um, where);
}

/* Tissue mask of the overview, then the plan over it; with an explicit
 * region, every cell of the region, each with its tissue fraction. */
static int
plan_tissue(const struct img *slide, const struct ov_geometry *geo,
            const struct acq_frame_geo *fg, const struct acq_options *o,
            struct acq_plan **plan, struct ss_err *err)
{
    struct tissue_params tp;
    struct tissue_stats ts;
    struct img *mask = NULL;
    int rc;

    tissue_params_default(&tp, geo->um_per_px);
    rc = tissue_detect(slide, &tp, &mask, &ts, err);
    if (rc == 0 && has_region(o))
        rc = acq_plan_region(o->region_x_um, o->region_y_um, o->region_w_um,
                             o->region_h_um, fg, o->overlap, plan, err);
    else if (rc == 0)
        rc = acq_plan_mask(mask, geo, fg, o->overlap, ACQ_PLAN_MARGIN_UM +
                           ACQ_PLAN_OV_PX * geo->um_per_px, plan, err);
    if (rc == 0 && has_region(o) && tissue_fractions(*plan, mask, geo) != 0)
        rc = err_set(err, -ENOMEM, "plan: no memory");
    if (rc == 0 && has_region(o) && !plan_has_tissue(*plan))
        rc = region_empty(o, ts.tissue_px * geo->um_per_px * geo->um_per_px *
                          1e-6, err);
    if (rc == 0 && has_region(o))
        (*plan)->tissue_outside_mm2 = uncovered_mm2(*plan, mask, geo);
    if (rc == 0 && (*plan)->tissue_outside_mm2 > 0)
        log_warn("scan", "tissue continues beyond the scanned region "
                 "outside_mm2=%.3f", (*plan)->tissue_outside_mm2);
    img_free(mask);
    if (rc == 0)
        log_info("scan", "tissue found area_mm2=%.2f pieces=%d dust=%d "
                 "od_threshold=%.3f", ts.tissue_px * geo->um_per_px *
                 geo->um_per_px * 1e-6, ts.pieces, ts.dust_removed,
                 ts.threshold);
    if (rc != 0) {
        acq_plan_free(*plan);
        *plan = NULL;
    }
    return rc;
}

int
acq_plan_overview(struct microscope *m, const struct acq_options *o,
                  struct acq_plan **plan, struct img **overview,
                  struct img **label, struct ss_err *err)
{
    struct acq_frame_geo fg;
    struct ov_geometry geo;
    struct img *slide = NULL;
    int rc = 0;

    *plan = NULL;
    if (overview != NULL)
        *overview = NULL;
    if (label != NULL)
        *label = NULL;
    frame_geo(m, &fg);
    if (m->ov == NULL && !has_region(o))
        return err_set(err, SS_ECONFIG, "plan: the microscope has no "
                       "overview camera; give a scan region");
    if (m->ov != NULL) {
        rc = m->ov->ops->capture(m->ov, &slide, &geo, err);
        if (rc != 0) {
            err_prefix(err, "overview camera");
            return rc;
        }
        if (label != NULL && m->ov->ops->label != NULL &&
            m->ov->ops->label(m->ov, label, NULL) != 0)
            *label = NULL;
    }
    if (slide == NULL)
        rc = acq_plan_region(o->region_x_um, o->region_y_um, o->region_w_um,
                             o->region_h_um, &fg, o->overlap, plan, err);
    else
        rc = plan_tissue(slide, &geo, &fg, o, plan, err);
    if (rc == 0)
        log_notice("scan", "planned tiles=%d cells=%d rows=%d cols=%d "
                   "step_x_um=%.1f step_y_um=%.1f", (*plan)->ntiles,
                   (*plan)->cells_total, (*plan)->rows, (*plan)->cols,
                   (*plan)->step_x_um, (*plan)->step_y_um);
    if (rc != 0 && label != NULL) {
        img_free(*label);
        *label = NULL;
    }
    if (overview != NULL && rc == 0)
        *overview = slide;
    else
        img_free(slide);
    return rc;
}
