/* SPDX-License-Identifier: MIT */
/*
 * Stitching a real scan on the simulated microscope: CMU-1-Small-Region
 * is scanned in a serpentine grid (20x, 0.5 µm/px, stage repeatability
 * σ 0.5 µm, backlash 5 µm taken up by one-sided approaches, focus on the
 * true focal surface), each frame flat-field corrected and kept as JPEG
 * q95 like the tile store does, then registered, placed and written at
 * quality 90.  Measured against the simulator's truth: the placement
 * error of every tile (goal RMS ≤ 0.3 px, max ≤ 1 px), with every camera
 * and optics effect of the simulator on, and the level-0 PSNR against the
 * ideal image (goal ≥ 35 dB).
 *
 * The PSNR goal is measured on a second scan with the camera's noise
 * switched off: with it on, a single raw frame of this simulator is only
 * 34.5 dB from the ideal image before any stitching, and no stitcher can
 * take noise back out.  Optical blur, vignetting (flat-fielded), stage
 * errors and both JPEG generations stay on.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/img.h"
#include "drivers/sim/sim.h"
#include "imaging/flatfield.h"
#include "imaging/stitch.h"
#include "storage/wsi.h"

#define COLS 4
#define ROWS 4
#define NT (COLS * ROWS)
#define OVERLAP 0.10
#define WHITE 240.0

struct scan {
    struct microscope *m;
    struct sim *s;
    struct sim_geometry g;
    struct img *dark, *flat;
    double origin_x_um, origin_y_um, step_x_um, step_y_um;
    unsigned char *jpg[NT];
    size_t len[NT];
    double true_x[NT], true_y[NT];  /* canvas px */
    struct stitch_tile tiles[NT];
    struct stitch_input in;
};

static struct scan scans[2];        /* camera noise on, off */

static int
load_jpeg(void *ctx, int index, struct img **out, struct ss_err *err)
{
    struct scan *s = ctx;

    return img_jpeg_decode(s->jpg[index], s->len[index], out, err);
}

/* Mean of n frames; the lamp as asked (off for the dark frame). */
static struct img *
average(struct scan *s, double x, double y, bool lamp, int n)
{
    struct camera *cam = NULL;
    struct img *sum = NULL, *f;
    struct cam_settings cs = { 250, 1, { 1, 1, 1 } };
    struct ss_err e;
    int i;

    if (!lamp) {
        assert_int_equal(sim_camera_new(s->s, &cam, &e), 0);
        assert_int_equal(cam->ops->open(cam, &e), 0);
        assert_int_equal(cam->ops->configure(cam, &cs, &e), 0);
        assert_int_equal(cam->ops->set_lamp(cam, false, &e), 0);
    }
    for (i = 0; i < n; i++) {
        if (lamp)
            assert_int_equal(sim_snap(s->s, x, y, sim_focus_z(s->s, x, y),
                                      0, 50, &f, &e), 0);
        else
            assert_int_equal(cam->ops->capture(cam, &f, &e), 0);
        assert_int_equal(ff_accum_add(&sum, f, &e), 0);
        img_free(f);
    }
    ff_accum_finish(sum, n);
    if (cam != NULL) {
        cam->ops->set_lamp(cam, true, &e);
        cam->ops->close(cam);
        camera_free(cam);
    }
    return sum;
}

static void
capture(struct scan *s, int r, int c, int slot)
{
    double x = s->origin_x_um + c * s->step_x_um;
    double y = s->origin_y_um + r * s->step_y_um;
    double cx = x + s->g.frame_w * s->g.pixel_um / 2;
    double cy = y + s->g.frame_h * s->g.pixel_um / 2;
    struct img *raw, *ff;
    struct sim_truth t;
    struct ss_err e;

    assert_int_equal(sim_snap(s->s, x, y, sim_focus_z(s->s, cx, cy), 0, 50,
                              &raw, &e), 0);
    sim_truth_last(s->s, &t);
    assert_int_equal(ff_correct(raw, s->dark, s->flat, WHITE, &ff, &e), 0);
    assert_int_equal(img_jpeg_encode(ff, 95, 444, &s->jpg[slot],
                                     &s->len[slot], &e), 0);
    s->true_x[slot] = (t.x_um - s->origin_x_um) / s->g.pixel_um;
    s->true_y[slot] = (t.y_um - s->origin_y_um) / s->g.pixel_um;
    s->tiles[slot].index = slot;
    s->tiles[slot].row = r;
    s->tiles[slot].col = c;
    s->tiles[slot].x_px = c * s->step_x_um / s->g.pixel_um;
    s->tiles[slot].y_px = r * s->step_y_um / s->g.pixel_um;
    img_free(raw);
    img_free(ff);
}

static int
scan_run(struct scan *sc, const char *slide, const char *noise)
{
    struct sim_config cfg;
    struct ss_err e;
    int r, c, n = 0;

    sim_config_default(&cfg);
    if (sim_config_set(&cfg, "slide", slide, &e) != 0 ||
        sim_config_set(&cfg, "sensor_w", "640", &e) != 0 ||
        sim_config_set(&cfg, "sensor_h", "480", &e) != 0 ||
        sim_config_set(&cfg, "repeat_sigma_um", "0.5,0.5,0.1", &e) != 0 ||
        sim_config_set(&cfg, "backlash_um", "5,5,2", &e) != 0 ||
        sim_config_set(&cfg, "noise_scale", noise, &e) != 0 ||
        sim_microscope_new(&cfg, &sc->m, &e) != 0) {
        fprintf(stderr, "# simulator: %s\n", e.msg);
        return -1;
    }
    sc->s = sim_of(sc->m);
    sim_geometry_get(sc->s, &sc->g);
    sc->step_x_um = sc->g.frame_w * sc->g.pixel_um * (1 - OVERLAP);
    sc->step_y_um = sc->g.frame_h * sc->g.pixel_um * (1 - OVERLAP);
    sc->origin_x_um = sc->g.image_x_um + 40;
    sc->origin_y_um = sc->g.image_y_um + 60;
    sc->flat = average(sc, sc->g.blank_x_um, sc->g.blank_y_um, true, 8);
    sc->dark = average(sc, 0, 0, false, 8);
    for (r = 0; r < ROWS; r++)
        for (c = 0; c < COLS; c++, n++)
            capture(sc, r, r % 2 ? COLS - 1 - c : c, n);

    sc->in.frame_w = sc->g.frame_w;
    sc->in.frame_h = sc->g.frame_h;
    sc->in.rows = ROWS;
    sc->in.cols = COLS;
    sc->in.step_x_px = sc->step_x_um / sc->g.pixel_um;
    sc->in.step_y_px = sc->step_y_um / sc->g.pixel_um;
    sc->in.max_stage_err_px = 8;
    sc->in.ntiles = NT;
    sc->in.tiles = sc->tiles;
    sc->in.load = load_jpeg;
    sc->in.ctx = sc;
    return 0;
}

static int
setup(void **state)
{
    const char *slide = tu_data("wsi/CMU-1-Small-Region.svs");

    memset(scans, 0, sizeof(scans));
    if (slide == NULL)
        return 0;
    if (scan_run(&scans[0], slide, "1") < 0 ||
        scan_run(&scans[1], slide, "0") < 0)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    int i, k;

    for (k = 0; k < 2; k++) {
        for (i = 0; i < NT; i++)
            tjFree(scans[k].jpg[i]);
        img_free(scans[k].dark);
        img_free(scans[k].flat);
        microscope_free(scans[k].m);
    }
    return 0;
}

static void
test_placement_error_against_sim_truth(void **state)
{
    struct scan *sc = &scans[0];
    struct stitch_placement *pl = NULL;
    struct ss_err e;
    double sum2 = 0, worst = 0, mx = 0, my = 0, stage2 = 0, abs2 = 0;
    int i;

    if (sc->m == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    assert_int_equal(stitch_register(&sc->in, &pl, &e), 0);
    for (i = 0; i < NT; i++) {
        mx += (pl->x_px[i] - sc->true_x[i]) / NT;
        my += (pl->y_px[i] - sc->true_y[i]) / NT;
        stage2 += pow(sc->tiles[i].x_px - sc->true_x[i], 2) +
                  pow(sc->tiles[i].y_px - sc->true_y[i], 2);
    }
    for (i = 0; i < NT; i++) {
        double d = hypot(pl->x_px[i] - sc->true_x[i] - mx,
                         pl->y_px[i] - sc->true_y[i] - my);

        sum2 += d * d;
        abs2 += pow(pl->x_px[i] - sc->true_x[i], 2) +
                pow(pl->y_px[i] - sc->true_y[i], 2);
        worst = fmax(worst, d);
    }
    print_message("# sim scan %dx%d frames %dx%d: pairs used %d/%d, "
                  "stage error rms %.3f px; placement error rms %.3f px, "
                  "max %.3f px (mosaic offset %.3f, %.3f px; absolute rms "
                  "%.3f px)\n", COLS, ROWS, sc->g.frame_w, sc->g.frame_h,
                  pl->pairs_used, pl->pairs_total, sqrt(stage2 / NT),
                  sqrt(sum2 / NT), worst, mx, my, sqrt(abs2 / NT));
    assert_true(sqrt(sum2 / NT) <= 0.3);
    assert_true(worst <= 1.0);
    /* The mosaic as a whole can only be as right as the mean of NT stage
     * positions: within 3 σ / √NT of the truth. */
    assert_true(hypot(mx, my) <= 3 * sqrt(stage2 / NT) / sqrt(NT) + 0.1);
    stitch_placement_free(pl);
}

static struct img *
read_level0(const char *path, int w, int h)
{
    openslide_t *os = openslide_open(path);
    uint32_t *argb = malloc((size_t)w * h * 4);
    struct img *im = img_new(w, h, 3, IMG_U8);
    int i;

    assert_non_null(os);
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

/* Level-0 PSNR of scan sc written with `mode`, against the ideal image
 * of the area the mosaic shows.  The mosaic as a whole sits where the
 * mean of the stage errors puts it (nothing in the tiles says where the
 * slide is), so the ideal image is rendered at that offset. */
static double
scan_psnr(struct scan *sc, const struct stitch_placement *pl, int mode,
          const char *path)
{
    struct wsi_meta m;
    struct ss_err e;
    struct img *truth, *out;
    double mx = 0, my = 0, psnr;
    int i;

    for (i = 0; i < NT; i++) {
        mx += (pl->x_px[i] - sc->true_x[i]) / NT;
        my += (pl->y_px[i] - sc->true_y[i]) / NT;
    }
    assert_int_equal(sim_render_truth_white(sc->s,
                     sc->origin_x_um - mx * sc->g.pixel_um,
                     sc->origin_y_um - my * sc->g.pixel_um, pl->canvas_w,
                     pl->canvas_h, sc->g.pixel_um, WHITE, &truth, &e), 0);
    wsi_meta_default(&m);
    m.mpp = sc->g.pixel_um;
    assert_int_equal(m.quality, 90);
    sc->in.resample = mode;
    assert_int_equal(stitch_write(&sc->in, pl, &m, path, &e), 0);
    sc->in.resample = 0;
    out = read_level0(path, pl->canvas_w, pl->canvas_h);
    psnr = img_psnr(truth, out, 4, 4, out->w - 8, out->h - 8);
    img_free(out);
    img_free(truth);
    return psnr;
}

static void
test_scan_fidelity_psnr(void **state)
{
    static const int modes[] = { STITCH_RESAMPLE_NEAREST,
                                 STITCH_RESAMPLE_BILINEAR,
                                 STITCH_RESAMPLE_CUBIC };
    static const char *names[] = { "nearest", "bilinear", "cubic" };
    struct stitch_placement *pl[2] = { NULL, NULL };
    const char *path = tu_tmp("scan.svs");
    double psnr[2][3];
    struct ss_err e;
    char rep[8192];
    int k, n;

    if (scans[0].m == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    for (n = 0; n < 2; n++) {
        assert_int_equal(stitch_register(&scans[n].in, &pl[n], &e), 0);
        for (k = 0; k < 3; k++) {
            psnr[n][k] = scan_psnr(&scans[n], pl[n], modes[k], path);
            print_message("# level-0 PSNR against the ideal image, camera "
                          "noise %s, %s: %.2f dB\n", n ? "off" : "on",
                          names[k], psnr[n][k]);
        }
    }
    assert_true(psnr[1][2] >= 35.0);
    assert_true(psnr[1][2] > psnr[1][0]);
    assert_int_equal(wsi_verify(path, scans[1].g.pixel_um, rep, sizeof(rep),
                                &e), 0);
    stitch_placement_free(pl[0]);
    stitch_placement_free(pl[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_error_against_sim_truth),
        cmocka_unit_test(test_scan_fidelity_psnr),
    };

    return cmocka_run_group_tests_name("stitch_sim", tests, setup,
                                       teardown);
}
