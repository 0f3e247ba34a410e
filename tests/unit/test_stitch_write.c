/* SPDX-License-Identifier: MIT */
/*
 * imaging/stitch.c stitch_write() and imaging/blend.c: a grid of tiles of
 * a scene that can be sampled exactly at sub-pixel positions is stitched,
 * written and read back through OpenSlide, and compared with the scene
 * itself: PSNR per resampling mode, seams (overlap zones against tile
 * interiors), cells never captured, cancellation and bad input.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/img.h"
#include "common/rng.h"
#include "imaging/blend.h"
#include "imaging/stitch.h"
#include "storage/wsi.h"

/* A smooth, band-limited stained-looking scene that can be evaluated at
 * any real position: Gaussian "nuclei" on a slowly varying pink ground. */
struct scene {
    int n;
    double *x, *y, *s, *amp;
    uint8_t *rgb;                   /* per blob colour */
};

static struct scene *
scene_new(double w, double h, int n, uint64_t seed)
{
    struct scene *sc = calloc(1, sizeof(*sc));
    struct rng r;
    int i;

    rng_init(&r, seed);
    sc->n = n;
    sc->x = malloc(sizeof(double) * n);
    sc->y = malloc(sizeof(double) * n);
    sc->s = malloc(sizeof(double) * n);
    sc->amp = malloc(sizeof(double) * n);
    sc->rgb = malloc(3 * (size_t)n);
    for (i = 0; i < n; i++) {
        sc->x[i] = rng_uniform(&r) * w;
        sc->y[i] = rng_uniform(&r) * h;
        sc->s[i] = 1.5 + 3 * rng_uniform(&r);
        sc->amp[i] = 0.4 + 0.6 * rng_uniform(&r);
        sc->rgb[3 * i] = (uint8_t)(60 + 80 * rng_uniform(&r));
        sc->rgb[3 * i + 1] = (uint8_t)(20 + 60 * rng_uniform(&r));
        sc->rgb[3 * i + 2] = (uint8_t)(110 + 60 * rng_uniform(&r));
    }
    return sc;
}

static void
scene_free(struct scene *sc)
{
    free(sc->x);
    free(sc->y);
    free(sc->s);
    free(sc->amp);
    free(sc->rgb);
    free(sc);
}

/* w × h pixels whose (0, 0) samples the scene at (x0, y0). */
static struct img *
scene_render(const struct scene *sc, double x0, double y0, int w, int h)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    float *acc = calloc((size_t)w * h * 3, sizeof(float));
    int i, x, y, c;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            double u = x + x0, v = y + y0;
            float *a = acc + 3 * ((size_t)y * w + x);

            a[0] = (float)(232 + 10 * sin(u * 0.013) * cos(v * 0.011));
            a[1] = (float)(190 + 14 * sin(u * 0.009 + v * 0.004));
            a[2] = (float)(215 + 8 * cos(v * 0.017));
        }
    for (i = 0; i < sc->n; i++) {
        double bx = sc->x[i] - x0, by = sc->y[i] - y0, rr = 4 * sc->s[i];
        int xa = (int)floor(bx - rr), xb = (int)ceil(bx + rr);
        int ya = (int)floor(by - rr), yb = (int)ceil(by + rr);

        for (y = ya < 0 ? 0 : ya; y <= yb && y < h; y++)
            for (x = xa < 0 ? 0 : xa; x <= xb && x < w; x++) {
                double d2 = (x - bx) * (x - bx) + (y - by) * (y - by);
                double g = sc->amp[i] *
                           exp(-d2 / (2 * sc->s[i] * sc->s[i]));
                float *a = acc + 3 * ((size_t)y * w + x);

                for (c = 0; c < 3; c++)
                    a[c] += (float)(g * (sc->rgb[3 * i + c] - a[c]));
            }
    }
    for (i = 0; i < w * h * 3; i++)
        ((uint8_t *)im->data)[i] = (uint8_t)fmin(255, fmax(0, acc[i] + 0.5));
    free(acc);
    return im;
}

static void
add_noise(struct img *im, double sigma, uint64_t seed)
{
    struct rng r;
    size_t i;

    rng_init(&r, seed);
    for (i = 0; i < img_bytes(im); i++) {
        double v = ((uint8_t *)im->data)[i] + sigma * rng_gauss(&r);

        ((uint8_t *)im->data)[i] = (uint8_t)fmin(255, fmax(0, v + 0.5));
    }
}

#define COLS 4
#define ROWS 3
#define FW 400
#define FH 300
#define SX 360.0
#define SY 270.0

struct grid {
    struct scene *sc;
    double tx[COLS * ROWS], ty[COLS * ROWS];
    struct stitch_tile tiles[COLS * ROWS];
    struct stitch_input in;
    int loads, cancel_at, calls;
};

static int
grid_load(void *ctx, int index, struct img **out, struct ss_err *err)
{
    struct grid *g = ctx;

    if (index < 0 || index >= COLS * ROWS)
        return err_set(err, -ENOENT, "no tile %d", index);
    g->loads++;
    *out = scene_render(g->sc, g->tx[index], g->ty[index], FW, FH);
    add_noise(*out, 1.0, 900 + index);
    return 0;
}

static int
grid_progress(void *ctx, int done, int total)
{
    struct grid *g = ctx;

    return ++g->calls == g->cancel_at;
}

/* Stage errors σ 1.5 px with zero mean, so the mosaic as a whole sits
 * where the scene does and the comparison measures stitching alone. */
static void
grid_init(struct grid *g, int skip)
{
    struct rng r;
    double mx = 0, my = 0;
    int i, n = 0;

    memset(g, 0, sizeof(*g));
    g->sc = scene_new(SX * COLS + FW, SY * ROWS + FH, 6000, 41);
    rng_init(&r, 8);
    for (i = 0; i < COLS * ROWS; i++) {
        g->tx[i] = 1.5 * rng_gauss(&r);
        g->ty[i] = 1.5 * rng_gauss(&r);
        mx += g->tx[i] / (COLS * ROWS);
        my += g->ty[i] / (COLS * ROWS);
    }
    for (i = 0; i < COLS * ROWS; i++) {
        struct stitch_tile *t = &g->tiles[n];

        g->tx[i] += (i % COLS) * SX - mx;
        g->ty[i] += (i / COLS) * SY - my;
        if (i == skip)
            continue;
        t->index = i;
        t->row = i / COLS;
        t->col = i % COLS;
        t->x_px = t->col * SX;
        t->y_px = t->row * SY;
        n++;
    }
    g->in.frame_w = FW;
    g->in.frame_h = FH;
    g->in.rows = ROWS;
    g->in.cols = COLS;
    g->in.step_x_px = SX;
    g->in.step_y_px = SY;
    g->in.max_stage_err_px = 8;
    g->in.ntiles = n;
    g->in.tiles = g->tiles;
    g->in.load = grid_load;
    g->in.ctx = g;
}

static struct img *
read_level0(const char *path)
{
    openslide_t *os = openslide_open(path);
    int64_t w, h;
    uint32_t *argb;
    struct img *im;
    int i;

    assert_non_null(os);
    openslide_get_level0_dimensions(os, &w, &h);
    argb = malloc((size_t)(w * h) * 4);
    im = img_new((int)w, (int)h, 3, IMG_U8);
    openslide_read_region(os, argb, 0, 0, 0, w, h);
    assert_null(openslide_get_error(os));
    for (i = 0; i < w * h; i++) {
        uint8_t *p = (uint8_t *)im->data + 3 * i;

        p[0] = (uint8_t)(argb[i] >> 16);
        p[1] = (uint8_t)(argb[i] >> 8);
        p[2] = (uint8_t)argb[i];
    }
    free(argb);
    openslide_close(os);
    return im;
}

/* PSNR over the columns and rows where two tiles overlap (seams) and
 * over the rest (interiors), inset from the canvas border. */
static void
zone_psnr(const struct img *a, const struct img *b, double *seam,
          double *inner)
{
    double s2[2] = { 0, 0 }, n[2] = { 0, 0 };
    int x, y, c;

    for (y = 8; y < a->h - 8; y++)
        for (x = 8; x < a->w - 8; x++) {
            double fx = fmod(x, SX), fy = fmod(y, SY);
            int z = (x >= SX && fx < FW - SX) || (y >= SY && fy < FH - SY);

            for (c = 0; c < 3; c++) {
                double d = img_u8(a, x, y)[c] - img_u8(b, x, y)[c];

                s2[z] += d * d;
                n[z]++;
            }
        }
    *inner = 10 * log10(255.0 * 255.0 / (s2[0] / n[0]));
    *seam = 10 * log10(255.0 * 255.0 / (s2[1] / n[1]));
}

static void
test_stitched_canvas_matches_the_scene(void **state)
{
    static const int modes[] = { STITCH_RESAMPLE_NEAREST,
                                 STITCH_RESAMPLE_BILINEAR,
                                 STITCH_RESAMPLE_CUBIC };
    static const char *names[] = { "nearest", "bilinear", "cubic" };
    struct grid g;
    struct stitch_placement *pl = NULL;
    struct wsi_meta m;
    struct ss_err e;
    struct img *truth, *out;
    double psnr[3], seam, inner;
    int k;

    grid_init(&g, -1);
    assert_int_equal(stitch_register(&g.in, &pl, &e), 0);
    assert_int_equal(g.loads, COLS * ROWS);
    truth = scene_render(g.sc, 0, 0, pl->canvas_w, pl->canvas_h);
    wsi_meta_default(&m);
    for (k = 0; k < 3; k++) {
        g.in.resample = modes[k];
        g.loads = 0;
        assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("grid.svs"),
                                      &e), 0);
        assert_int_equal(g.loads, COLS * ROWS);
        out = read_level0(tu_tmp("grid.svs"));
        assert_int_equal(out->w, pl->canvas_w);
        assert_int_equal(out->h, pl->canvas_h);
        psnr[k] = img_psnr(truth, out, 8, 8, out->w - 16, out->h - 16);
        zone_psnr(truth, out, &seam, &inner);
        print_message("# %s: PSNR %.2f dB (seams %.2f, interiors %.2f)\n",
                      names[k], psnr[k], seam, inner);
        if (modes[k] == STITCH_RESAMPLE_CUBIC) {
            /* Seams must not show: the overlaps are as good as the rest. */
            assert_true(seam >= inner - 1.0);
        }
        img_free(out);
    }
    assert_true(psnr[2] >= 38.0);
    assert_true(psnr[2] > psnr[0]);
    assert_true(psnr[2] > psnr[1]);
    stitch_placement_free(pl);
    img_free(truth);
    scene_free(g.sc);
}

static void
test_uncaptured_cell_is_background(void **state)
{
    struct grid g;
    struct stitch_placement *pl = NULL;
    struct wsi_meta m;
    struct ss_err e;
    struct img *out;
    int x, y;

    grid_init(&g, 5);               /* row 1, column 1 never captured */
    assert_int_equal(stitch_register(&g.in, &pl, &e), 0);
    assert_int_equal(pl->canvas_w, (int)(3 * SX) + FW);
    wsi_meta_default(&m);
    m.background[0] = 250;
    m.background[1] = 251;
    m.background[2] = 252;
    assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("hole.svs"), &e), 0);
    out = read_level0(tu_tmp("hole.svs"));
    /* Inset by the stage error and a JPEG block from the neighbours. */
    for (y = (int)SY + 45; y < (int)(2 * SY) - 20; y++)
        for (x = (int)SX + 45; x < (int)(2 * SX) - 20; x++)
            if (abs(img_u8(out, x, y)[2] - 252) > 2)
                fail_msg("pixel (%d, %d) is %d, %d, %d", x, y,
                         img_u8(out, x, y)[0], img_u8(out, x, y)[1],
                         img_u8(out, x, y)[2]);
    img_free(out);
    stitch_placement_free(pl);
    scene_free(g.sc);
}

/* A crop writes that part of the canvas: the same pixels as the whole
 * canvas there (up to JPEG, whose 8 × 8 blocks fall elsewhere), from
 * only the tiles that reach it; it is clipped to the canvas, and one
 * that misses the canvas is refused. */
static void
test_crop_is_that_part_of_the_canvas(void **state)
{
    struct grid g;
    struct stitch_placement *pl = NULL;
    struct img *whole, *part, *want;
    struct wsi_meta m;
    struct ss_err e;
    int rect[4];
    double db;

    grid_init(&g, -1);
    assert_int_equal(stitch_register(&g.in, &pl, &e), 0);
    wsi_meta_default(&m);
    m.quality = 95;
    assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("w.svs"), &e), 0);
    g.in.crop_x_px = 250;           /* columns 0-2 and rows 0-1 reach it */
    g.in.crop_y_px = 130;
    g.in.crop_w_px = 700;
    g.in.crop_h_px = 400;
    g.loads = 0;
    stitch_output_rect(&g.in, pl, rect);
    assert_int_equal(rect[0], 250);
    assert_int_equal(rect[1], 130);
    assert_int_equal(rect[2], 700);
    assert_int_equal(rect[3], 400);
    assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("p.svs"), &e), 0);
    assert_int_equal(g.loads, 6);
    whole = read_level0(tu_tmp("w.svs"));
    part = read_level0(tu_tmp("p.svs"));
    assert_int_equal(part->w, 700);
    assert_int_equal(part->h, 400);
    want = img_crop(whole, 250, 130, 700, 400);
    db = img_psnr(want, part, 0, 0, 700, 400);
    print_message("# crop 700x400+250+130 against the canvas: %.1f dB\n",
                  db);
    assert_true(db >= 40.0);
    /* Past the right edge: clipped; wholly outside: refused. */
    g.in.crop_x_px = pl->canvas_w - 100;
    g.in.crop_w_px = 500;
    stitch_output_rect(&g.in, pl, rect);
    assert_int_equal(rect[2], 100);
    g.in.crop_x_px = pl->canvas_w;
    assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("x.svs"), &e),
                     -EINVAL);
    assert_non_null(strstr(e.msg, "misses the"));
    img_free(want);
    img_free(part);
    img_free(whole);
    stitch_placement_free(pl);
    scene_free(g.sc);
}

static void
test_cancel_leaves_no_file(void **state)
{
    struct grid g;
    struct stitch_placement *pl = NULL;
    struct wsi_meta m;
    struct ss_err e;

    grid_init(&g, -1);
    assert_int_equal(stitch_register(&g.in, &pl, &e), 0);
    g.in.progress = grid_progress;
    g.cancel_at = 10;
    wsi_meta_default(&m);
    assert_int_equal(stitch_write(&g.in, pl, &m, tu_tmp("c.svs"), &e),
                     SS_ECANCELED);
    assert_non_null(strstr(e.msg, "cancelled"));
    assert_int_not_equal(access(tu_tmp("c.svs"), F_OK), 0);
    g.calls = 0;
    g.cancel_at = 3;
    stitch_placement_free(pl);
    pl = NULL;
    assert_int_equal(stitch_register(&g.in, &pl, &e), SS_ECANCELED);
    assert_null(pl);
    scene_free(g.sc);
}

static int
bad_load(void *ctx, int index, struct img **out, struct ss_err *err)
{
    if (index == 2)
        return err_set(err, -EIO, "tiles/000002.jpg: short read");
    *out = img_new(index == 3 ? 100 : FW, FH, 3, IMG_U8);
    return 0;
}

static void
test_bad_input_is_named(void **state)
{
    struct grid g;
    struct stitch_placement *pl = NULL;
    struct ss_err e;

    grid_init(&g, -1);
    g.tiles[1].col = 0;             /* two tiles in cell (0, 0) */
    assert_int_equal(stitch_register(&g.in, &pl, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "tiles 0 and 1 both claim cell (0, 0)"));
    g.tiles[1].col = 7;
    assert_int_equal(stitch_register(&g.in, &pl, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "tile 1: cell (7, 0)"));
    scene_free(g.sc);
    grid_init(&g, -1);
    g.in.load = bad_load;
    assert_int_equal(stitch_register(&g.in, &pl, &e), -EIO);
    assert_string_equal(e.msg, "tile 2: tiles/000002.jpg: short read");
    g.tiles[2].index = 99;
    assert_int_equal(stitch_register(&g.in, &pl, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "tile 3: loaded 100x300"));
    scene_free(g.sc);
}

static void
test_shift_moves_content_by_the_fraction(void **state)
{
    struct scene *sc = scene_new(300, 300, 300, 9);
    struct img *a = scene_render(sc, 50, 50, 200, 200);
    struct img *want = scene_render(sc, 50 - 0.3, 50 - 0.7, 200, 200);
    struct img *got = blend_shift(a, 0.3, 0.7, BLEND_CUBIC);
    struct img *lin = blend_shift(a, 0.3, 0.7, BLEND_BILINEAR);
    double pc = img_psnr(want, got, 4, 4, 192, 192);
    double pl = img_psnr(want, lin, 4, 4, 192, 192);
    float w[10];

    print_message("# shift by (0.3, 0.7): cubic %.2f dB, bilinear %.2f "
                  "dB\n", pc, pl);
    assert_true(pc >= 40.0);
    assert_true(pc > pl);
    blend_ramp(w, 10, 4);
    assert_float_equal(w[0], 0.125, 1e-6);
    assert_float_equal(w[5], 1.0, 1e-6);
    assert_float_equal(w[9], 0.125, 1e-6);
    img_free(a);
    img_free(want);
    img_free(got);
    img_free(lin);
    scene_free(sc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shift_moves_content_by_the_fraction),
        cmocka_unit_test(test_stitched_canvas_matches_the_scene),
        cmocka_unit_test(test_uncaptured_cell_is_background),
        cmocka_unit_test(test_crop_is_that_part_of_the_canvas),
        cmocka_unit_test(test_cancel_leaves_no_file),
        cmocka_unit_test(test_bad_input_is_named),
    };

    return cmocka_run_group_tests_name("stitch_write", tests, NULL, NULL);
}
