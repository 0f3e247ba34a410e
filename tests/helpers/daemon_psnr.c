/* SPDX-License-Identifier: MIT */
/*
 * Test helper for tests/e2e/daemon_end_to_end.sh, built by `make tests`
 * as $(BUILD)/tests/helpers/daemon_psnr: the level-0 PSNR of a scanned
 * WSI against what a perfect scanner would have recorded, and where the
 * difference comes from.
 *
 *   daemon_psnr DATA_DIR SCAN SLIDE_SPEC [SIM_KEY=VALUE ...]
 *
 * Rebuilds the simulated microscope with the same [simulator] keys and
 * places the same slide.  The mosaic as a whole sits where the mean of
 * its tiles' stage positions puts it, a fraction of a pixel off the true
 * position (nothing in the tiles says where the slide is), and that
 * offset is no loss of fidelity.  So the offset is measured to a fraction
 * of a pixel by phase correlation (imaging/register.h) of each captured
 * tile's footprint against the ideal image, averaged over the footprints,
 * and the ideal image (sim_render_truth_white at the flat-field white) is
 * rendered again at that offset; the measurement is repeated once against
 * the new rendering.  The PSNR then covers the footprints of the captured
 * tiles inside the slide image (the scanned area).
 *
 * Prints two lines:
 *   psnr_db=.. offset_px=dx,dy residual_px=dx,dy whole_px_db=..
 *   shift_px=dx,dy pixels=.. width=.. height=.. mpp=..
 *   tiles_db=.. tiles=..
 * offset_px is the mosaic's offset from the true position, residual_px
 * what the second measurement still found.  whole_px_db is the best PSNR
 * over whole-pixel shifts (±3), the coarser alignment, for comparison.
 * tiles_db is the stored tiles (when the scan kept them: [scan]
 * keep_tiles) each against the ideal image at its own measured position:
 * capture, flat-field and the tile store's JPEG q95 before stitching, so
 * psnr_db - tiles_db is what stitching, blending and the WSI's JPEG
 * change.  With DAEMON_PSNR_DUMP set to a directory it also writes
 * wsi.png and truth.png there.
 */
#include <math.h>
#include <openslide/openslide.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"
#include "imaging/register.h"
#include "scan/acquire.h"
#include "storage/catalogue.h"
#include "storage/tilestore.h"

/* Footprints are measured this far inside their edges: the blend zones
 * and the mosaic's rim stay out of the correlation. */
#define WINDOW_INSET_PX 16

/* Where the ideal image is and what it is compared with. */
struct cmp {
    struct sim *s;
    struct sim_geometry g;
    const struct acq_plan *plan;
    const struct img *wsi;
    const uint8_t *mask;
    struct cat_tile *tiles;
    int ntiles;
    double white;
};

static int
fail(const char *what, const char *why)
{
    fprintf(stderr, "daemon_psnr: %s: %s\n", what, why);
    return 1;
}

/* Level 0 of the WSI as RGB, from OpenSlide's premultiplied ARGB. */
static struct img *
read_level0(const char *path, double *mpp)
{
    openslide_t *os = openslide_open(path);
    int64_t w, h, i;
    uint32_t *argb;
    struct img *im;
    const char *v;

    if (os == NULL || openslide_get_error(os) != NULL)
        return NULL;
    openslide_get_level0_dimensions(os, &w, &h);
    v = openslide_get_property_value(os, OPENSLIDE_PROPERTY_NAME_MPP_X);
    *mpp = v != NULL ? atof(v) : 0;
    argb = malloc((size_t)(w * h) * 4);
    im = img_new((int)w, (int)h, 3, IMG_U8);
    openslide_read_region(os, argb, 0, 0, 0, w, h);
    for (i = 0; i < w * h; i++) {
        uint8_t *p = (uint8_t *)im->data + i * 3;
        p[0] = (uint8_t)(argb[i] >> 16);
        p[1] = (uint8_t)(argb[i] >> 8);
        p[2] = (uint8_t)argb[i];
    }
    free(argb);
    openslide_close(os);
    return im;
}

/* Canvas pixel (x, y) lies inside the slide image. */
static int
in_image(const struct cmp *c, int x, int y)
{
    double sx = c->plan->origin_x_um + x * c->plan->pixel_um;
    double sy = c->plan->origin_y_um + y * c->plan->pixel_um;

    return sx >= c->g.image_x_um && sy >= c->g.image_y_um &&
           sx < c->g.image_x_um + c->g.image_w_um &&
           sy < c->g.image_y_um + c->g.image_h_um;
}

/* Tile t's planned footprint on the canvas, inset by `inset` pixels and
 * clipped to the canvas and, when `image` is set, to the slide image. */
static void
footprint(const struct cmp *c, const struct cat_tile *t, int inset,
          int image, int box[4])
{
    const struct acq_plan *p = c->plan;
    int x0 = (int)((t->x_um - p->origin_x_um) / p->pixel_um) + inset;
    int y0 = (int)((t->y_um - p->origin_y_um) / p->pixel_um) + inset;
    int lim[4] = { 0, 0, c->wsi->w, c->wsi->h };

    if (image) {
        lim[0] = (int)ceil((c->g.image_x_um - p->origin_x_um) / p->pixel_um);
        lim[1] = (int)ceil((c->g.image_y_um - p->origin_y_um) / p->pixel_um);
        lim[2] = (int)floor((c->g.image_x_um + c->g.image_w_um -
                             p->origin_x_um) / p->pixel_um);
        lim[3] = (int)floor((c->g.image_y_um + c->g.image_h_um -
                             p->origin_y_um) / p->pixel_um);
    }
    box[0] = x0 > lim[0] ? x0 : lim[0];
    box[1] = y0 > lim[1] ? y0 : lim[1];
    box[2] = x0 + p->frame_w - 2 * inset;
    box[3] = y0 + p->frame_h - 2 * inset;
    box[2] = box[2] < lim[2] ? box[2] : lim[2];
    box[3] = box[3] < lim[3] ? box[3] : lim[3];
    box[2] = box[2] < c->wsi->w ? box[2] : c->wsi->w;
    box[3] = box[3] < c->wsi->h ? box[3] : c->wsi->h;
}

/* 1 where a captured tile inside the slide image covers the canvas. */
static uint8_t *
scanned_mask(const struct cmp *c)
{
    uint8_t *m = calloc((size_t)c->wsi->w * c->wsi->h, 1);
    int i, x, y, b[4];

    for (i = 0; m != NULL && i < c->ntiles; i++) {
        if (c->tiles[i].state != CAT_T_CAPTURED)
            continue;
        footprint(c, &c->tiles[i], 0, 0, b);
        for (y = b[1]; y < b[3]; y++)
            for (x = b[0]; x < b[2]; x++)
                if (in_image(c, x, y))
                    m[(size_t)y * c->wsi->w + x] = 1;
    }
    return m;
}

/* Squared error and count of a against b shifted by (dx, dy) over the
 * mask (pixels whose partner falls outside are left out). */
static double
masked_se(const struct img *a, const struct img *b, const uint8_t *m,
          int dx, int dy, long *count)
{
    const uint8_t *pa = a->data, *pb = b->data;
    double se = 0;
    int x, y, k;

    *count = 0;
    for (y = 0; y < a->h; y++) {
        if (y + dy < 0 || y + dy >= b->h)
            continue;
        for (x = 0; x < a->w; x++) {
            size_t i = (size_t)y * a->w + x;
            size_t j = (size_t)(y + dy) * b->w + (x + dx);
            if (!m[i] || x + dx < 0 || x + dx >= b->w)
                continue;
            for (k = 0; k < 3; k++) {
                double d = (double)pa[i * 3 + k] - pb[j * 3 + k];
                se += d * d;
            }
            (*count)++;
        }
    }
    return se;
}

static double
psnr_of(double se, long samples)
{
    if (samples == 0)
        return 0;
    if (se == 0)
        return INFINITY;
    return 10 * log10(255.0 * 255.0 / (se / samples));
}

static double
masked_psnr(const struct img *a, const struct img *b, const uint8_t *m,
            int dx, int dy, long *count)
{
    double se = masked_se(a, b, m, dx, dy, count);

    return psnr_of(se, 3 * *count);
}

/* The best PSNR over whole-pixel shifts of up to 3 (the former measure,
 * printed for comparison). */
static double
whole_px_psnr(const struct img *a, const struct img *b, const uint8_t *m,
              int *bx, int *by)
{
    double best = -1, db;
    int dx, dy;
    long n;

    for (dy = -3; dy <= 3; dy++)
        for (dx = -3; dx <= 3; dx++) {
            db = masked_psnr(a, b, m, dx, dy, &n);
            if (db > best) {
                best = db;
                *bx = dx;
                *by = dy;
            }
        }
    return best;
}

/* Grey values of im over box, as floats. */
static float *
grey_box(const struct img *im, const int box[4])
{
    int w = box[2] - box[0], h = box[3] - box[1], x, y;
    float *g = malloc(sizeof(float) * (size_t)w * h);

    for (y = 0; g != NULL && y < h; y++)
        for (x = 0; x < w; x++) {
            const uint8_t *p = img_u8(im, box[0] + x, box[1] + y);
            g[(size_t)y * w + x] = (p[0] + p[1] + p[2]) / 3.0f;
        }
    return g;
}

/* Sub-pixel offset d of `seen` against `ideal` over box: seen(x) shows
 * ideal(x + d).  Returns the box's pixel count, 0 when the correlation
 * is not trusted. */
static long
box_offset(const struct img *ideal, const struct img *seen,
           const int box[4], double *dx, double *dy)
{
    int w = box[2] - box[0], h = box[3] - box[1];
    struct reg_params rp;
    struct reg_result r;
    float *a, *b;
    long n = 0;

    if (w < 64 || h < 64)
        return 0;
    a = grey_box(ideal, box);
    b = grey_box(seen, box);
    reg_params_default(&rp);
    rp.max_shift_px = 8;
    if (a != NULL && b != NULL &&
        reg_phase_correlate(a, b, w, h, &rp, &r, NULL) == 0 && r.ok) {
        *dx = r.dx;
        *dy = r.dy;
        n = (long)w * h;
    }
    free(a);
    free(b);
    return n;
}

/* The mosaic's offset against `ideal`: the footprint offsets of the
 * captured tiles (inside the slide image) averaged by area. */
static int
mosaic_offset(const struct cmp *c, const struct img *ideal, double *ox,
              double *oy)
{
    double sx = 0, sy = 0, dx, dy;
    long n, total = 0;
    int i, b[4];

    for (i = 0; i < c->ntiles; i++) {
        if (c->tiles[i].state != CAT_T_CAPTURED)
            continue;
        footprint(c, &c->tiles[i], WINDOW_INSET_PX, 1, b);
        n = box_offset(ideal, c->wsi, b, &dx, &dy);
        sx += n * dx;
        sy += n * dy;
        total += n;
    }
    if (total == 0)
        return -1;
    *ox = sx / total;
    *oy = sy / total;
    return 0;
}

/* The ideal image of the canvas shifted by (ox, oy) pixels. */
static struct img *
render_at(const struct cmp *c, double ox, double oy)
{
    const struct acq_plan *p = c->plan;
    struct img *im = NULL;
    struct ss_err e;

    if (sim_render_truth_white(c->s, p->origin_x_um + ox * p->pixel_um,
                               p->origin_y_um + oy * p->pixel_um, c->wsi->w,
                               c->wsi->h, p->pixel_um, c->white, &im,
                               &e) < 0)
        fail("truth", e.msg);
    return im;
}

/* One stored tile against the ideal image at its own measured position,
 * over its part inside the slide image; adds to *se and *n. */
static void
tile_error(const struct cmp *c, struct tilestore *ts, const struct cat_tile
           *t, double *se, long *n)
{
    const struct acq_plan *p = c->plan;
    int box[4] = { WINDOW_INSET_PX, WINDOW_INSET_PX,
                   p->frame_w - WINDOW_INSET_PX,
                   p->frame_h - WINDOW_INSET_PX };
    struct img *tile = NULL, *ideal = NULL;
    double dx = 0, dy = 0, sx, sy;
    uint8_t *m = NULL;
    long cnt;
    int x, y;

    if (tilestore_get(ts, t->idx, &tile, NULL) < 0)
        return;
    if (sim_render_truth_white(c->s, t->rx_um, t->ry_um, p->frame_w,
                               p->frame_h, p->pixel_um, c->white, &ideal,
                               NULL) == 0 &&
        box_offset(ideal, tile, box, &dx, &dy) > 0) {
        img_free(ideal);
        ideal = NULL;
        sim_render_truth_white(c->s, t->rx_um + dx * p->pixel_um,
                               t->ry_um + dy * p->pixel_um, p->frame_w,
                               p->frame_h, p->pixel_um, c->white, &ideal,
                               NULL);
        m = calloc((size_t)p->frame_w * p->frame_h, 1);
    }
    for (y = box[1]; ideal != NULL && m != NULL && y < box[3]; y++)
        for (x = box[0]; x < box[2]; x++) {
            sx = t->rx_um + x * p->pixel_um;
            sy = t->ry_um + y * p->pixel_um;
            m[(size_t)y * p->frame_w + x] =
                sx >= c->g.image_x_um && sy >= c->g.image_y_um &&
                sx < c->g.image_x_um + c->g.image_w_um &&
                sy < c->g.image_y_um + c->g.image_h_um;
        }
    if (ideal != NULL && m != NULL) {
        *se += masked_se(tile, ideal, m, 0, 0, &cnt);
        *n += 3 * cnt;
    }
    free(m);
    img_free(tile);
    img_free(ideal);
}

/* PSNR of the stored tiles, or 0 when none was kept. */
static double
tiles_psnr(const struct cmp *c, const char *data_dir, int64_t scan,
           int *used)
{
    struct tilestore *ts;
    double se = 0;
    long n = 0, before;
    int i;

    *used = 0;
    if (tilestore_open(data_dir, scan, &ts, NULL) < 0)
        return 0;
    for (i = 0; i < c->ntiles; i++) {
        if (c->tiles[i].state != CAT_T_CAPTURED)
            continue;
        before = n;
        tile_error(c, ts, &c->tiles[i], &se, &n);
        *used += n > before;
    }
    tilestore_close(ts);
    return psnr_of(se, n);
}

static int
make_sim(int argc, char **argv, const char *spec, struct microscope **m,
         struct sim **s)
{
    struct sim_config c;
    struct ss_err e;
    char key[128], *eq;
    int i;

    sim_config_default(&c);
    for (i = 0; i < argc; i++) {
        snprintf(key, sizeof(key), "%s", argv[i]);
        eq = strchr(key, '=');
        if (eq == NULL)
            return fail(argv[i], "not KEY=VALUE");
        *eq = '\0';
        if (sim_config_set(&c, key, eq + 1, &e) < 0)
            return fail(argv[i], e.msg);
    }
    if (sim_microscope_new(&c, m, &e) < 0)
        return fail("simulator", e.msg);
    *s = sim_of(*m);
    if (sim_load_slide(*s, spec, &e) < 0)
        return fail(spec, e.msg);
    return 0;
}

static void
dump(const char *dir, const struct img *wsi, const struct img *truth)
{
    char path[8192];

    if (dir == NULL || *dir == '\0')
        return;
    snprintf(path, sizeof(path), "%s/wsi.png", dir);
    img_png_write(wsi, path, NULL);
    snprintf(path, sizeof(path), "%s/truth.png", dir);
    img_png_write(truth, path, NULL);
}

int
main(int argc, char **argv)
{
    struct img *wsi, *truth = NULL, *again;
    struct acq_plan *plan = NULL;
    struct acq_options o;
    struct microscope *m;
    struct cat_scan sc;
    struct ss_err e;
    struct cmp cm;
    struct cat *c;
    double mpp = 0, db, whole_db, ox = 0, oy = 0, rx = 0, ry = 0;
    int sx = 0, sy = 0, used;
    char path[8192];
    long n;

    if (argc < 4)
        return fail("usage", "daemon_psnr DATA_DIR SCAN SPEC [KEY=VALUE]");
    snprintf(path, sizeof(path), "%s/catalogue.db", argv[1]);
    memset(&cm, 0, sizeof(cm));
    if (cat_open(path, &c, &e) < 0 ||
        cat_scan_get(c, atoll(argv[2]), &sc, &e) < 0 ||
        cat_plan_load(c, sc.id, &plan, &e) < 0 ||
        cat_tiles_load(c, sc.id, &cm.tiles, &cm.ntiles, &e) < 0)
        return fail(path, e.msg);
    if (make_sim(argc - 4, argv + 4, argv[3], &m, &cm.s) != 0)
        return 1;
    sim_geometry_get(cm.s, &cm.g);
    acq_options_default(&o);
    cm.white = o.white;
    cm.plan = plan;
    snprintf(path, sizeof(path), "%s/%s", argv[1], sc.wsi_path);
    wsi = read_level0(path, &mpp);
    if (wsi == NULL)
        return fail(path, "OpenSlide cannot read it");
    cm.wsi = wsi;
    cm.mask = scanned_mask(&cm);
    truth = render_at(&cm, 0, 0);
    if (truth == NULL || cm.mask == NULL)
        return 1;
    whole_db = whole_px_psnr(wsi, truth, cm.mask, &sx, &sy);
    if (mosaic_offset(&cm, truth, &ox, &oy) < 0)
        return fail("alignment", "no tile footprint correlates with the "
                    "ideal image");
    img_free(truth);
    truth = render_at(&cm, ox, oy);
    if (truth != NULL && mosaic_offset(&cm, truth, &rx, &ry) == 0) {
        again = render_at(&cm, ox + rx, oy + ry);
        if (again != NULL) {
            img_free(truth);
            truth = again;
            ox += rx;
            oy += ry;
        }
    }
    if (truth == NULL)
        return 1;
    dump(getenv("DAEMON_PSNR_DUMP"), wsi, truth);
    db = masked_psnr(wsi, truth, cm.mask, 0, 0, &n);
    printf("psnr_db=%.2f offset_px=%.3f,%.3f residual_px=%.3f,%.3f "
           "whole_px_db=%.2f shift_px=%d,%d pixels=%ld width=%d height=%d "
           "mpp=%.4f\n", db, ox, oy, rx, ry, whole_db, sx, sy, n, wsi->w,
           wsi->h, mpp);
    db = tiles_psnr(&cm, argv[1], sc.id, &used);
    printf("tiles_db=%.2f tiles=%d\n", db, used);
    free((void *)cm.mask);
    free(cm.tiles);
    img_free(wsi);
    img_free(truth);
    cat_plan_free(plan);
    cat_close(c);
    microscope_free(m);
    return 0;
}
