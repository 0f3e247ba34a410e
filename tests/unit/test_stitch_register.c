/* SPDX-License-Identifier: MIT */
/*
 * imaging/register.c and imaging/place.c: phase correlation of overlap
 * views with known offsets (crops of a real H&E slide, and a synthetic
 * scene that can be sampled exactly at sub-pixel positions), field case
 * T1 (empty overlaps must not register), outlier rejection, and the
 * placement error of a whole grid against the true positions.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "common/rng.h"
#include "imaging/place.h"
#include "imaging/register.h"
#include "imaging/stitch.h"

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

static float *
grey(const struct img *im)
{
    float *g = malloc(sizeof(float) * (size_t)im->w * im->h);
    int i;

    for (i = 0; i < im->w * im->h; i++) {
        const uint8_t *p = (uint8_t *)im->data + 3 * i;

        g[i] = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
    }
    return g;
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

static struct img *cmu;

static int
load_cmu(void **state)
{
    const char *p = tu_data("wsi/CMU-1-Small-Region.svs");
    struct ss_err e;

    if (p != NULL && img_read_any(p, &cmu, &e) != 0)
        cmu = NULL;
    return 0;
}

static int
free_cmu(void **state)
{
    img_free(cmu);
    return 0;
}

/* b is the slide seen (dx, dy) further on: b(x) = a(x + d). */
static void
test_known_offsets_on_real_tissue(void **state)
{
    static const int off[][2] = { { 0, 0 }, { 7, -3 }, { -12, 5 },
                                  { 3, 14 }, { -1, -1 } };
    struct reg_params p;
    size_t i;

    if (cmu == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    reg_params_default(&p);
    for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        struct img *a = img_crop(cmu, 900, 1200, 160, 900);
        struct img *b = img_crop(cmu, 900 + off[i][0], 1200 + off[i][1],
                                 160, 900);
        float *ga = grey(a), *gb = grey(b);
        struct reg_result r;
        struct ss_err e;

        assert_int_equal(reg_phase_correlate(ga, gb, 160, 900, &p, &r, &e),
                         0);
        print_message("# offset (%d, %d): found (%.3f, %.3f) ratio %.1f "
                      "ncc %.3f\n", off[i][0], off[i][1], r.dx, r.dy,
                      r.peak_ratio, r.ncc);
        assert_true(r.ok);
        assert_true(fabs(r.dx - off[i][0]) < 0.1);
        assert_true(fabs(r.dy - off[i][1]) < 0.1);
        free(ga);
        free(gb);
        img_free(a);
        img_free(b);
    }
}

static void
test_subpixel_offsets_on_exact_scene(void **state)
{
    struct scene *sc = scene_new(700, 700, 1500, 21);
    struct reg_params p;
    double worst = 0, sum2 = 0;
    int k;

    reg_params_default(&p);
    for (k = 0; k < 12; k++) {
        double dx = -4 + 0.73 * k, dy = 2.5 - 0.41 * k;
        struct img *a = scene_render(sc, 100, 100, 120, 500);
        struct img *b = scene_render(sc, 100 + dx, 100 + dy, 120, 500);
        float *ga, *gb;
        struct reg_result r;
        struct ss_err e;
        double err;

        add_noise(a, 2.0, 100 + k);
        add_noise(b, 2.0, 200 + k);
        ga = grey(a);
        gb = grey(b);
        assert_int_equal(reg_phase_correlate(ga, gb, 120, 500, &p, &r, &e),
                         0);
        assert_true(r.ok);
        err = hypot(r.dx - dx, r.dy - dy);
        worst = fmax(worst, err);
        sum2 += err * err;
        free(ga);
        free(gb);
        img_free(a);
        img_free(b);
    }
    print_message("# sub-pixel error: rms %.3f px, max %.3f px\n",
                  sqrt(sum2 / 12), worst);
    assert_true(sqrt(sum2 / 12) <= 0.1);
    assert_true(worst <= 0.2);
    scene_free(sc);
}

/* T1 inputs: two 512 × 512 tiles, 51 px planned overlap (stage offset
 * 461 px).  `textured` picks the overlap content. */
struct t1 {
    struct img *tile[2];
};

static int
t1_load(void *ctx, int index, struct img **out, struct ss_err *err)
{
    struct t1 *t = ctx;

    *out = img_dup(t->tile[index]);
    return 0;
}

static void
t1_make(struct t1 *t, bool textured, double true_dx, double true_dy)
{
    if (textured) {
        struct scene *sc = scene_new(1200, 800, 3000, 5);

        t->tile[0] = scene_render(sc, 100, 100, 512, 512);
        t->tile[1] = scene_render(sc, 100 + true_dx, 100 + true_dy, 512,
                                  512);
        scene_free(sc);
    } else {
        int i;

        for (i = 0; i < 2; i++) {
            t->tile[i] = img_new(512, 512, 3, IMG_U8);
            memset(t->tile[i]->data, 235, img_bytes(t->tile[i]));
            add_noise(t->tile[i], 3.0, 50 + i);
        }
    }
    for (int i = 0; i < 2; i++)
        add_noise(t->tile[i], 1.5, 70 + i);
}

static void
t1_input(struct t1 *t, struct stitch_tile tiles[2], struct stitch_input *in,
         double max_err)
{
    memset(in, 0, sizeof(*in));
    memset(tiles, 0, 2 * sizeof(*tiles));
    tiles[0].index = 0;
    tiles[1].index = 1;
    tiles[1].col = 1;
    tiles[1].x_px = 461;
    in->frame_w = in->frame_h = 512;
    in->rows = 1;
    in->cols = 2;
    in->step_x_px = 461;
    in->step_y_px = 461;
    in->max_stage_err_px = max_err;
    in->ntiles = 2;
    in->tiles = tiles;
    in->load = t1_load;
    in->ctx = t;
}

static void
t1_free(struct t1 *t)
{
    img_free(t->tile[0]);
    img_free(t->tile[1]);
}

static void
test_t1_empty_overlap_does_not_register(void **state)
{
    struct t1 t;
    struct stitch_tile tiles[2];
    struct stitch_input in;
    struct stitch_placement *pl = NULL;
    struct ss_err e;

    t1_make(&t, false, 461, 0);
    t1_input(&t, tiles, &in, 10);
    assert_int_equal(stitch_register(&in, &pl, &e), 0);
    print_message("# empty overlap: pairs %d used %d, tile 1 at (%.3f, "
                  "%.3f)\n", pl->pairs_total, pl->pairs_used, pl->x_px[1],
                  pl->y_px[1]);
    assert_int_equal(pl->pairs_total, 1);
    assert_int_equal(pl->pairs_used, 0);
    assert_int_equal(pl->pairs_rejected, 1);
    assert_true(pl->flags[0] & STITCH_STAGE_ONLY);
    assert_true(pl->flags[1] & STITCH_STAGE_ONLY);
    assert_float_equal(pl->x_px[1], 461.0, 1e-9);
    assert_float_equal(pl->y_px[1], 0.0, 1e-9);
    stitch_placement_free(pl);
    t1_free(&t);
}

static void
test_t1_textured_overlap_registers(void **state)
{
    struct t1 t;
    struct stitch_tile tiles[2];
    struct stitch_input in;
    struct stitch_placement *pl = NULL;
    struct ss_err e;
    double rel_x, rel_y;

    t1_make(&t, true, 468, -3);
    t1_input(&t, tiles, &in, 10);
    assert_int_equal(stitch_register(&in, &pl, &e), 0);
    rel_x = pl->x_px[1] - pl->x_px[0];
    rel_y = pl->y_px[1] - pl->y_px[0];
    print_message("# textured overlap: relative position (%.3f, %.3f)\n",
                  rel_x, rel_y);
    assert_int_equal(pl->pairs_used, 1);
    assert_false(pl->flags[1] & STITCH_STAGE_ONLY);
    assert_true(fabs(rel_x - 468) <= 1);
    assert_true(fabs(rel_y + 3) <= 1);
    stitch_placement_free(pl);

    /* The same pair with a stage that is never more than 5 px off: a
     * 7.6 px correction is implausible and refused. */
    t1_input(&t, tiles, &in, 5);
    assert_int_equal(stitch_register(&in, &pl, &e), 0);
    assert_int_equal(pl->pairs_used, 0);
    assert_true(pl->flags[1] & STITCH_STAGE_ONLY);
    assert_float_equal(pl->x_px[1], 461.0, 1e-9);
    stitch_placement_free(pl);
    t1_free(&t);
}

/* A 3 × 3 loop with one wrong measurement: the outlier is dropped and the
 * others agree exactly with the truth. */
static void
test_outlier_pair_is_dropped(void **state)
{
    double x0[9], y0[9], x[9], y[9], tx[9], ty[9], rms;
    struct place_pair pp[12];
    struct place_problem pb;
    struct ss_err e;
    int i, n = 0, r, c;

    for (i = 0; i < 9; i++) {
        tx[i] = (i % 3) * 100 + 0.3 * i;
        ty[i] = (i / 3) * 100 - 0.2 * i;
        x0[i] = (i % 3) * 100;
        y0[i] = (i / 3) * 100;
    }
    memset(pp, 0, sizeof(pp));
    for (r = 0; r < 3; r++)
        for (c = 0; c < 3; c++) {
            int a = r * 3 + c;

            if (c < 2) {
                pp[n].a = a;
                pp[n].b = a + 1;
                n++;
            }
            if (r < 2) {
                pp[n].a = a;
                pp[n].b = a + 3;
                n++;
            }
        }
    for (i = 0; i < n; i++) {
        pp[i].dx = tx[pp[i].b] - tx[pp[i].a];
        pp[i].dy = ty[pp[i].b] - ty[pp[i].a];
        pp[i].weight = 16;
    }
    pp[7].dx += 6;                  /* one bad registration, tiles 4-5 */
    memset(&pb, 0, sizeof(pb));
    pb.n = 9;
    pb.x0 = x0;
    pb.y0 = y0;
    pb.prior_weight = 1e-4;
    pb.npairs = n;
    pb.pairs = pp;
    pb.outlier_px = 1.0;
    assert_int_equal(place_solve(&pb, x, y, &rms, &e), 0);
    assert_false(pp[7].used);
    for (i = 0; i < n; i++)
        if (i != 7)
            assert_true(pp[i].used);
    for (i = 1; i < 9; i++) {
        assert_true(fabs((x[i] - x[0]) - (tx[i] - tx[0])) < 1e-3);
        assert_true(fabs((y[i] - y[0]) - (ty[i] - ty[0])) < 1e-3);
    }
    assert_true(rms < 1e-3);
}

/* A 4 × 5 grid over the exact scene: the stage is off by σ 1.5 px per
 * tile, registrations must bring every tile within the goals against the
 * true positions (RMS ≤ 0.3 px, max ≤ 1 px). */
struct grid {
    struct scene *sc;
    double tx[20], ty[20];
};

static int
grid_load(void *ctx, int index, struct img **out, struct ss_err *err)
{
    struct grid *g = ctx;

    *out = scene_render(g->sc, g->tx[index], g->ty[index], 400, 300);
    add_noise(*out, 2.0, 900 + index);
    return 0;
}

static void
test_grid_placement_error_against_truth(void **state)
{
    struct grid g;
    struct stitch_tile tiles[20];
    struct stitch_input in;
    struct stitch_placement *pl = NULL;
    struct ss_err e;
    struct rng r;
    double sum2 = 0, worst = 0, mx = 0, my = 0;
    int i;

    g.sc = scene_new(1800, 1200, 9000, 33);
    rng_init(&r, 77);
    memset(tiles, 0, sizeof(tiles));
    for (i = 0; i < 20; i++) {
        tiles[i].index = i;
        tiles[i].row = i / 5;
        tiles[i].col = i % 5;
        tiles[i].x_px = tiles[i].col * 360.0;
        tiles[i].y_px = tiles[i].row * 270.0;
        g.tx[i] = tiles[i].x_px + 1.5 * rng_gauss(&r);
        g.ty[i] = tiles[i].y_px + 1.5 * rng_gauss(&r);
    }
    memset(&in, 0, sizeof(in));
    in.frame_w = 400;
    in.frame_h = 300;
    in.rows = 4;
    in.cols = 5;
    in.step_x_px = 360;
    in.step_y_px = 270;
    in.max_stage_err_px = 8;
    in.ntiles = 20;
    in.tiles = tiles;
    in.load = grid_load;
    in.ctx = &g;
    assert_int_equal(stitch_register(&in, &pl, &e), 0);
    assert_int_equal(pl->canvas_w, 4 * 360 + 400);
    assert_int_equal(pl->canvas_h, 3 * 270 + 300);
    assert_int_equal(pl->pairs_total, 31);
    /* The mosaic as a whole may sit where the mean stage error puts it;
     * what matters is each tile against the others. */
    for (i = 0; i < 20; i++) {
        mx += (pl->x_px[i] - g.tx[i]) / 20;
        my += (pl->y_px[i] - g.ty[i]) / 20;
    }
    for (i = 0; i < 20; i++) {
        double d = hypot(pl->x_px[i] - g.tx[i] - mx,
                         pl->y_px[i] - g.ty[i] - my);

        sum2 += d * d;
        worst = fmax(worst, d);
        assert_false(pl->flags[i] & STITCH_STAGE_ONLY);
    }
    print_message("# grid: pairs used %d/%d, residual %.3f px, placement "
                  "error rms %.3f px, max %.3f px, mean offset (%.2f, "
                  "%.2f)\n", pl->pairs_used, pl->pairs_total,
                  pl->residual_rms_px, sqrt(sum2 / 20), worst, mx, my);
    assert_true(sqrt(sum2 / 20) <= 0.3);
    assert_true(worst <= 1.0);
    assert_true(hypot(mx, my) <= 1.5);
    stitch_placement_free(pl);
    scene_free(g.sc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_offsets_on_real_tissue),
        cmocka_unit_test(test_subpixel_offsets_on_exact_scene),
        cmocka_unit_test(test_t1_empty_overlap_does_not_register),
        cmocka_unit_test(test_t1_textured_overlap_registers),
        cmocka_unit_test(test_outlier_pair_is_dropped),
        cmocka_unit_test(test_grid_placement_error_against_truth),
    };

    return cmocka_run_group_tests_name("stitch_register", tests, load_cmu,
                                       free_cmu);
}
