/* SPDX-License-Identifier: MIT */
/*
 * Stitching a real scan on the simulated microscope: CMU-1-Small-Region
 * is scanned in a serpentine grid (20x, 0.5 µm/px, stage repeatability
 * σ 0.5 µm, backlash 5 µm taken up by one-sided approaches), each frame
 * flat-field corrected and kept as JPEG q95 like the tile store does,
 * then registered, placed and written at quality 90.  Measured against
 * the simulator's truth: the placement error of every tile (goal RMS
 * ≤ 0.3 px, max ≤ 1 px) and the level-0 PSNR against the ideal image
 * (goal ≥ 35 dB).
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
#include "imaging/register.h"
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

static struct scan sc;

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
    if (getenv("DIAG"))
        fprintf(stderr, "# capture %d: want z %.3f true z %.3f focus %.3f cmd %.3f dz %.3f blur %.3f motion %.3f sat %.4f exp %.1f\n", slot, sim_focus_z(s->s, cx, cy), t.z_um, t.focus_z_um, t.cmd_um[2], t.dz_um, t.blur_px, t.motion_um, t.saturated_frac, t.exposure_ms);
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
setup(void **state)
{
    const char *slide = tu_data("wsi/CMU-1-Small-Region.svs");
    struct sim_config cfg;
    struct ss_err e;
    int r, c, n = 0;

    memset(&sc, 0, sizeof(sc));
    if (slide == NULL)
        return 0;
    sim_config_default(&cfg);
    if (sim_config_set(&cfg, "slide", slide, &e) != 0 ||
        sim_config_set(&cfg, "sensor_w", "640", &e) != 0 ||
        sim_config_set(&cfg, "sensor_h", "480", &e) != 0 ||
        sim_config_set(&cfg, "repeat_sigma_um", "0.5,0.5,0.1", &e) != 0 ||
        sim_config_set(&cfg, "backlash_um", "5,5,2", &e) != 0 ||
        (getenv("SIMX") && sim_config_set(&cfg, "noise_scale", getenv("SIMX"), &e)) ||
        (getenv("SIMP") && sim_config_set(&cfg, "psf_px", getenv("SIMP"), &e)) ||
        sim_microscope_new(&cfg, &sc.m, &e) != 0) {
        fprintf(stderr, "# simulator: %s\n", e.msg);
        return -1;
    }
    sc.s = sim_of(sc.m);
    sim_geometry_get(sc.s, &sc.g);
    sc.step_x_um = sc.g.frame_w * sc.g.pixel_um * (1 - OVERLAP);
    sc.step_y_um = sc.g.frame_h * sc.g.pixel_um * (1 - OVERLAP);
    sc.origin_x_um = sc.g.image_x_um + 40;
    sc.origin_y_um = sc.g.image_y_um + 60;
    sc.flat = average(&sc, sc.g.blank_x_um, sc.g.blank_y_um, true, 8);
    sc.dark = average(&sc, 0, 0, false, 8);
    for (r = 0; r < ROWS; r++)
        for (c = 0; c < COLS; c++, n++)
            capture(&sc, r, r % 2 ? COLS - 1 - c : c, n);

    sc.in.frame_w = sc.g.frame_w;
    sc.in.frame_h = sc.g.frame_h;
    sc.in.rows = ROWS;
    sc.in.cols = COLS;
    sc.in.step_x_px = sc.step_x_um / sc.g.pixel_um;
    sc.in.step_y_px = sc.step_y_um / sc.g.pixel_um;
    sc.in.max_stage_err_px = 8;
    sc.in.ntiles = NT;
    sc.in.tiles = sc.tiles;
    sc.in.load = load_jpeg;
    sc.in.ctx = &sc;
    return 0;
}

static int
teardown(void **state)
{
    int i;

    for (i = 0; i < NT; i++)
        tjFree(sc.jpg[i]);
    img_free(sc.dark);
    img_free(sc.flat);
    microscope_free(sc.m);
    return 0;
}

static void
test_placement_error_against_sim_truth(void **state)
{
    struct stitch_placement *pl = NULL;
    struct ss_err e;
    double sum2 = 0, worst = 0, mx = 0, my = 0, stage2 = 0, abs2 = 0;
    int i;

    if (sc.m == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    assert_int_equal(stitch_register(&sc.in, &pl, &e), 0);
    for (i = 0; i < NT; i++) {
        mx += (pl->x_px[i] - sc.true_x[i]) / NT;
        my += (pl->y_px[i] - sc.true_y[i]) / NT;
        stage2 += pow(sc.tiles[i].x_px - sc.true_x[i], 2) +
                  pow(sc.tiles[i].y_px - sc.true_y[i], 2);
    }
    for (i = 0; i < NT; i++) {
        double d = hypot(pl->x_px[i] - sc.true_x[i] - mx,
                         pl->y_px[i] - sc.true_y[i] - my);

        sum2 += d * d;
        abs2 += pow(pl->x_px[i] - sc.true_x[i], 2) +
                pow(pl->y_px[i] - sc.true_y[i], 2);
        worst = fmax(worst, d);
    }
    print_message("# sim scan %dx%d frames %dx%d: pairs used %d/%d, "
                  "stage error rms %.3f px; placement error rms %.3f px, "
                  "max %.3f px (mosaic offset %.3f, %.3f px; absolute rms "
                  "%.3f px)\n", COLS, ROWS, sc.g.frame_w, sc.g.frame_h,
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

static void
test_scan_fidelity_psnr(void **state)
{
    static const int modes[] = { STITCH_RESAMPLE_NEAREST,
                                 STITCH_RESAMPLE_BILINEAR,
                                 STITCH_RESAMPLE_CUBIC };
    static const char *names[] = { "nearest", "bilinear", "cubic" };
    struct stitch_placement *pl = NULL;
    struct wsi_meta m;
    struct ss_err e;
    struct img *truth, *out;
    double psnr[3];
    char rep[8192];
    int k;

    if (sc.m == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    double mx = 0, my = 0;
    assert_int_equal(stitch_register(&sc.in, &pl, &e), 0);
    for (k = 0; k < NT; k++) {
        mx += (pl->x_px[k] - sc.true_x[k]) / NT;
        my += (pl->y_px[k] - sc.true_y[k]) / NT;
    }
    assert_int_equal(sim_render_truth_white(sc.s, sc.origin_x_um - mx * sc.g.pixel_um,
                                            sc.origin_y_um - my * sc.g.pixel_um, pl->canvas_w,
                                            pl->canvas_h, sc.g.pixel_um,
                                            WHITE, &truth, &e), 0);
    wsi_meta_default(&m);
    m.mpp = sc.g.pixel_um;
    assert_int_equal(m.quality, 90);
    for (k = 0; k < 3; k++) {
        sc.in.resample = modes[k];
        assert_int_equal(stitch_write(&sc.in, pl, &m, tu_tmp("scan.svs"),
                                      &e), 0);
        out = read_level0(tu_tmp("scan.svs"), pl->canvas_w, pl->canvas_h);
        psnr[k] = img_psnr(truth, out, 4, 4, out->w - 8, out->h - 8);
        print_message("# level-0 PSNR against the ideal image, %s: %.2f "
                      "dB\n", names[k], psnr[k]);
        if (getenv("DIAG")) {
            int t;
            for (t = 0; t < NT; t++) {
                int x0 = (int)sc.tiles[t].x_px + 80, y0 = (int)sc.tiles[t].y_px + 60;
                struct img *fr, *oc, *tc;
                int rx = (int)floor(pl->x_px[t] + 0.5), ry = (int)floor(pl->y_px[t] + 0.5);
                img_jpeg_decode(sc.jpg[t], sc.len[t], &fr, &e);
                oc = img_crop(out, rx + 80, ry + 60, 400, 300);
                tc = img_crop(fr, 80, 60, 400, 300);
                print_message("#  tile %d (%d,%d) frac %.2f %.2f interior psnr %.2f vs frame %.2f\n", t, sc.tiles[t].col, sc.tiles[t].row,
                    pl->x_px[t] - floor(pl->x_px[t]), pl->y_px[t] - floor(pl->y_px[t]),
                    img_psnr(truth, out, x0, y0, 400, 300), img_psnr(oc, tc, 0, 0, 400, 300));
                {
                    struct img *trc = img_crop(truth, rx + 80, ry + 60, 400, 300);
                    float *ga = malloc(4 * 400 * 300), *gb = malloc(4 * 400 * 300);
                    struct reg_params rp; struct reg_result rr; int q;
                    for (q = 0; q < 400 * 300; q++) {
                        ga[q] = ((uint8_t *)trc->data)[3 * q + 1];
                        gb[q] = ((uint8_t *)oc->data)[3 * q + 1];
                    }
                    reg_params_default(&rp);
                    reg_phase_correlate(ga, gb, 400, 300, &rp, &rr, &e);
                    print_message("#    same-crop psnr %.2f out vs truth offset %.3f %.3f ok %d; solved-true %.3f %.3f\n", img_psnr(trc, oc, 0, 0, 400, 300), rr.dx, rr.dy, rr.ok,
                        pl->x_px[t] - sc.true_x[t], pl->y_px[t] - sc.true_y[t]);
                    free(ga); free(gb); img_free(trc);
                }
                {
                    struct img *tt;
                    sim_render_truth_white(sc.s, sc.origin_x_um + sc.true_x[t] * sc.g.pixel_um, sc.origin_y_um + sc.true_y[t] * sc.g.pixel_um,
                        sc.g.frame_w, sc.g.frame_h, sc.g.pixel_um, WHITE, &tt, &e);
                    print_message("#    frame vs truth at true pos %.2f (interior %.2f)\n", img_psnr(fr, tt, 0, 0, fr->w, fr->h), img_psnr(fr, tt, 80, 60, 400, 300));
                    img_free(tt);
                }
                img_free(fr); img_free(oc); img_free(tc);
            }
        }
        img_free(out);
    }
    sc.in.resample = 0;
    assert_true(psnr[2] >= 35.0);
    assert_int_equal(wsi_verify(tu_tmp("scan.svs"), sc.g.pixel_um, rep,
                                sizeof(rep), &e), 0);
    img_free(truth);
    stitch_placement_free(pl);
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
