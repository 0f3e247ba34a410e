/* SPDX-License-Identifier: MIT */
/*
 * Test helper for tests/e2e/daemon_end_to_end.sh (compiled by the script
 * against the build's libraries): the level-0 PSNR of a scanned WSI
 * against what a perfect scanner would have recorded.
 *
 *   daemon_psnr DATA_DIR SCAN SLIDE_SPEC [SIM_KEY=VALUE ...]
 *
 * Rebuilds the simulated microscope with the same [simulator] keys, places
 * the same slide, and renders the ideal image (sim_render_truth_white at
 * the flat-field white) over the WSI's canvas, which starts at the plan's
 * origin in stage coordinates.  The comparison covers the footprints of
 * the captured tiles inside the slide image (the scanned area), after
 * aligning the WSI as a whole to the truth by whole pixels (±3): where
 * the image sits on the stage does not change its fidelity.  Prints
 * "psnr_db=.. shift_px=dx,dy unshifted_db=.. pixels=.. width=.. height=..
 * mpp=.."; with DAEMON_PSNR_DUMP set to a directory it also writes
 * wsi.png and truth.png there.
 */
#include <math.h>
#include <openslide/openslide.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"
#include "scan/acquire.h"
#include "storage/catalogue.h"

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

/* 1 where a captured tile inside the slide image covers the canvas. */
static uint8_t *
scanned_mask(struct cat *c, int64_t scan, const struct acq_plan *p,
             const struct sim_geometry *g, int w, int h)
{
    uint8_t *m = calloc((size_t)w * h, 1);
    struct cat_tile *t = NULL;
    int n = 0, i, x, y;

    cat_tiles_load(c, scan, &t, &n, NULL);
    for (i = 0; i < n; i++) {
        double x0 = (t[i].x_um - p->origin_x_um) / p->pixel_um;
        double y0 = (t[i].y_um - p->origin_y_um) / p->pixel_um;
        if (t[i].state != CAT_T_CAPTURED)
            continue;
        for (y = (int)y0; y < (int)y0 + p->frame_h && y < h; y++)
            for (x = (int)x0; x < (int)x0 + p->frame_w && x < w; x++) {
                double sx = p->origin_x_um + x * p->pixel_um;
                double sy = p->origin_y_um + y * p->pixel_um;
                if (x >= 0 && y >= 0 && sx >= g->image_x_um &&
                    sy >= g->image_y_um &&
                    sx < g->image_x_um + g->image_w_um &&
                    sy < g->image_y_um + g->image_h_um)
                    m[(size_t)y * w + x] = 1;
            }
    }
    free(t);
    return m;
}

/* PSNR over the mask with the WSI shifted by (dx, dy) pixels against the
 * truth (pixels whose partner falls outside are left out). */
static double
masked_psnr(const struct img *a, const struct img *b, const uint8_t *m,
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
    if (*count == 0)
        return 0;
    return 10 * log10(255.0 * 255.0 / (se / (3.0 * *count)));
}

/* The best PSNR over whole-pixel shifts of up to SHIFT_MAX: where the
 * WSI sits on the stage as a whole does not change its fidelity, so the
 * comparison first aligns it (the offset found is reported). */
#define SHIFT_MAX 3

static double
aligned_psnr(const struct img *a, const struct img *b, const uint8_t *m,
             int *bx, int *by, long *count)
{
    double best = -1, db;
    int dx, dy;
    long n;

    for (dy = -SHIFT_MAX; dy <= SHIFT_MAX; dy++)
        for (dx = -SHIFT_MAX; dx <= SHIFT_MAX; dx++) {
            db = masked_psnr(a, b, m, dx, dy, &n);
            if (db > best) {
                best = db;
                *bx = dx;
                *by = dy;
                *count = n;
            }
        }
    return best;
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

int
main(int argc, char **argv)
{
    struct img *wsi, *truth = NULL;
    struct acq_plan *plan = NULL;
    struct acq_options o;
    struct microscope *m;
    struct sim_geometry g;
    struct cat_scan sc;
    struct ss_err e;
    struct sim *s;
    const char *dump = getenv("DAEMON_PSNR_DUMP");
    struct cat *c;
    double mpp = 0, db, db0;
    int dx = 0, dy = 0;
    char path[8192];
    uint8_t *mask;
    long n;

    if (argc < 4)
        return fail("usage", "daemon_psnr DATA_DIR SCAN SPEC [KEY=VALUE]");
    snprintf(path, sizeof(path), "%s/catalogue.db", argv[1]);
    if (cat_open(path, &c, &e) < 0 ||
        cat_scan_get(c, atoll(argv[2]), &sc, &e) < 0 ||
        cat_plan_load(c, sc.id, &plan, &e) < 0)
        return fail(path, e.msg);
    if (make_sim(argc - 4, argv + 4, argv[3], &m, &s) != 0)
        return 1;
    sim_geometry_get(s, &g);
    acq_options_default(&o);
    snprintf(path, sizeof(path), "%s/%s", argv[1], sc.wsi_path);
    wsi = read_level0(path, &mpp);
    if (wsi == NULL)
        return fail(path, "OpenSlide cannot read it");
    if (sim_render_truth_white(s, plan->origin_x_um, plan->origin_y_um,
                               wsi->w, wsi->h, plan->pixel_um, o.white,
                               &truth, &e) < 0)
        return fail("truth", e.msg);
    if (dump != NULL && *dump != '\0') {
        snprintf(path, sizeof(path), "%s/wsi.png", dump);
        img_png_write(wsi, path, NULL);
        snprintf(path, sizeof(path), "%s/truth.png", dump);
        img_png_write(truth, path, NULL);
    }
    mask = scanned_mask(c, sc.id, plan, &g, wsi->w, wsi->h);
    db0 = masked_psnr(wsi, truth, mask, 0, 0, &n);
    db = aligned_psnr(wsi, truth, mask, &dx, &dy, &n);
    printf("psnr_db=%.2f shift_px=%d,%d unshifted_db=%.2f pixels=%ld "
           "width=%d height=%d mpp=%.4f\n", db, dx, dy, db0, n, wsi->w,
           wsi->h, mpp);
    free(mask);
    img_free(wsi);
    img_free(truth);
    cat_plan_free(plan);
    cat_close(c);
    microscope_free(m);
    return 0;
}
